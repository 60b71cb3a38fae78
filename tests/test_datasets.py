"""The shared data layer: patient-level splits never leak, loaders keep geometry, 2D slicing."""

from __future__ import annotations

import numpy as np
import torch
import pytest
import yaml

from medsuite.data.cards import DataCard, load_card
from medsuite.data.datasets import SliceDataset, discover_records, make_dataset, make_loader, split_patients, split_records
from medsuite.io import read_image, write_nifti

from .conftest import oblique_affine, shared_path


def test_split_patients_is_disjoint_complete_and_seeded():
    patients = [f"{i:03d}" for i in range(1, 81)]
    split = split_patients(patients, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [56, 8, 16]
    assert set(split["train"]).isdisjoint(split["val"]) and set(split["train"]).isdisjoint(split["test"]) and set(split["val"]).isdisjoint(split["test"])
    assert sorted(split["train"] + split["val"] + split["test"]) == patients
    assert split == split_patients(list(reversed(patients)), {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert split != split_patients(patients, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1)


def test_small_cohort_still_gets_val_and_test():
    split = split_patients(["a", "b", "c", "d"], {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [2, 1, 1]


def _nifti_card(tmp_path, n_patients=5) -> DataCard:
    rng = np.random.default_rng(0)
    for p in range(n_patients):
        for frame in (1, 9):
            image = rng.normal(size=(16, 14, 6)).astype(np.float32) * 50 + 300
            label = np.zeros((16, 14, 6), np.uint8)
            label[4:10, 3:9, 1:5] = 1 + p % 3
            write_nifti(tmp_path / "images" / f"pat{p}_f{frame}.nii.gz", image, oblique_affine())
            write_nifti(tmp_path / "labels" / f"pat{p}_f{frame}.nii.gz", label, oblique_affine())
    data = yaml.safe_load(open(__import__("medsuite.data.cards", fromlist=["CARDS_DIR"]).CARDS_DIR / "acdc_nifti.yaml"))
    data["id"] = "generated"
    data["layout"] = {"kind": "nifti_folders", "root": str(tmp_path), "patient_regex": r"pat(\d+)_"}
    data["split"] = {"unit": "patient", "seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}}
    return DataCard.model_validate(data)


def test_generated_nifti_dataset_keeps_patients_together_and_normalises(tmp_path):
    card = _nifti_card(tmp_path)
    records = discover_records(card)
    assert len(records) == 10 and {r["patient"] for r in records} == {"0", "1", "2", "3", "4"}
    splits = split_records(card, records)
    by_split = {k: {r["patient"] for r in v} for k, v in splits.items()}
    assert [len(by_split[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert all(len(v) == 2 * len(by_split[k]) for k, v in splits.items())  # both frames follow their patient
    item = make_dataset(card, "test")[0]
    assert item["image"].shape[0] == 1 and item["label"].shape == item["image"].shape
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert set(np.unique(item["label"].numpy())) <= {0, 1, 2, 3}
    # Oriented to RAS: the affine's rotation is kept up to an axis permutation/flip, spacing is preserved.
    source = read_image(splits["test"][0]["image"])
    assert np.allclose(sorted(np.sqrt((item["image"].affine.numpy()[:3, :3] ** 2).sum(0))), sorted(source.spacing), atol=1e-4)


def test_patients_option_keeps_whole_patients(tmp_path):
    card = _nifti_card(tmp_path)
    train_patients = [r["patient"] for r in split_records(card, discover_records(card))["train"]]
    two = make_dataset(card, "train", patients=2, with_label=False)
    kept = [item["patient"] for item in two.data]
    assert len(kept) == 4 and list(dict.fromkeys(kept)) == list(dict.fromkeys(train_patients))[:2]
    assert kept.count(kept[0]) == 2  # both frames of each kept patient


def test_slice_augmentation_differs_between_items_after_seeding():
    """Regression: testing a MONAI Compose for truthiness re-seeded its transforms on every item, so after
    set_determinism every slice got the same 'random' augmentation."""
    from monai.transforms import Compose, RandGaussianNoised

    from medsuite.runtime import seed_everything

    seed_everything(0)
    volumes = [{"image": torch.zeros(1, 8, 8, 3)}]
    slices = SliceDataset(volumes, keys=("image",), transform=Compose([RandGaussianNoised("image", prob=1.0)]))
    noise = [np.asarray(slices[0]["image"]) for _ in range(3)]
    assert not np.allclose(noise[0], noise[1]) and not np.allclose(noise[1], noise[2])


def test_slice_dataset_and_loader(tmp_path):
    card = _nifti_card(tmp_path, n_patients=3)
    slices = SliceDataset(make_dataset(card, None), only_labelled=True)
    assert len(slices) == 6 * 4  # 6 volumes, labels on 4 of 6 slices each
    batch = next(iter(make_loader(slices, batch_size=4, shuffle=True, seed=0)))
    assert batch["image"].shape[0] == 4 and batch["image"].ndim == 4


def test_acdc_h5_layer_on_real_data():
    shared_path("acdc_h5")
    card = load_card("acdc_h5")
    records = discover_records(card)
    assert len(records) == 160 and len({r["patient"] for r in records}) == 80
    splits = split_records(card, records)
    patients = {k: {r["patient"] for r in v} for k, v in splits.items()}
    assert [len(patients[k]) for k in ("train", "val", "test")] == [56, 8, 16]
    assert not (patients["train"] & patients["test"]) and not (patients["val"] & patients["test"])
    item = make_dataset(card, "test", limit=1)[0]
    import h5py

    with h5py.File(splits["test"][0]["image"]) as handle:
        slices, rows, cols = handle["image"].shape
    assert item["image"].shape == (1, cols, rows, slices) and rows == 256  # (z,y,x) stored -> (x,y,z) as NIfTI
    assert item["image"].meta["index_space_only"] is True
    np.testing.assert_allclose(np.diag(item["image"].affine.numpy())[:3], [1.5, 1.5, 8.0])
    assert set(np.unique(item["label"].numpy())) == {0, 1, 2, 3}


def test_cinema_nifti_layer_on_real_data():
    shared_path("cardiac_multiview", "cinema_examples")
    card = load_card("mnms_multiview")
    records = discover_records(card)
    mnms2 = [r for r in records if r["patient"] == "mnms2"]
    assert {r["phase"] for r in mnms2} == {"ed", "es"} and all("lax_4c" in r for r in mnms2)
    index = [r["case"] for r in records].index("mnms2_ed")
    native = make_dataset(card, None, with_label=False, orientation=None)[index]
    assert native["image"].shape == (1, 192, 192, 12)  # the stack stays a stack of short-axis slices
    np.testing.assert_allclose(native["image"].affine.numpy(), read_image(mnms2[0]["image"]).affine, atol=1e-4)
    assert make_dataset(card, None, with_label=False)[index]["image"].shape == (1, 192, 12, 192)  # RAS reorders axes
    assert not np.allclose(read_image(mnms2[0]["image"]).affine[:3, :3], np.diag(np.diag(read_image(mnms2[0]["image"]).affine[:3, :3])))  # oblique


def test_missing_data_root_is_a_clear_error(tmp_path):
    from medsuite.errors import MedsuiteError

    card = load_card("acdc_nifti")
    with pytest.raises(MedsuiteError, match="give --root or set MEDSUITE_DATA_ACDC_NIFTI"):
        discover_records(card, root=tmp_path / "nowhere")
