"""Report -> concept labels: a rule-based extractor with negation, uncertainty, synonyms and misspellings.

A report is split into modality sections by headers ("B-scan:", "FA:", "ICGA:"...), then into
clauses (sentences, ';', 'but', 'however'...). A concept is found when one of its phrases matches a
run of words, each word exactly or, for words of five letters or more, within one edit (typing
slips like 'hollowng'). A negation cue shortly before ("no", "without", "negative for") or after
("is absent", "not seen") makes it absent; an uncertainty cue ("cannot exclude", "possible",
"suspicious for") makes it uncertain and wins over negation, since "cannot be excluded" contains one.
Text before any header is matched against every modality's concepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsuite.concepts.vocabulary import Concept, Vocabulary

PRESENT, ABSENT, UNCERTAIN, NOT_MENTIONED = "present", "absent", "uncertain", "not mentioned"
STATUSES = (PRESENT, ABSENT, UNCERTAIN, NOT_MENTIONED)
_RANK = {PRESENT: 3, UNCERTAIN: 2, ABSENT: 1, NOT_MENTIONED: 0}  # a concept said twice keeps its strongest status

SECTION_HEADERS = {
    "US": ["b scan ultrasound", "b scan", "bscan", "ultrasound", "ultrasonography", "echography", "us"],
    "FA": ["fluorescein angiography", "ffa", "fa"],
    "ICGA": ["indocyanine green angiography", "icg angiography", "icga", "icg"],
}
NEGATION_BEFORE = ["no", "not", "without", "absent", "negative for", "free of", "no evidence of", "no sign of", "no signs of", "lack of", "lacks", "lacking", "nor", "neither", "none", "denies", "ruled out"]
NEGATION_AFTER = ["absent", "not seen", "not present", "not observed", "not identified", "not detected", "not noted", "not visible", "is excluded", "was excluded", "ruled out", "none"]
UNCERTAIN_BEFORE = ["possible", "possibly", "probable", "probably", "questionable", "suspicious for", "suspected", "suggestive of", "may", "might", "could", "equivocal", "cannot exclude", "can not exclude", "cannot rule out", "can not rule out", "rule out", "uncertain", "likely", "borderline", "indeterminate", "query", "ddx"]
UNCERTAIN_AFTER = ["cannot be excluded", "can not be excluded", "not excluded", "cannot be ruled out", "not ruled out", "suspected", "questionable", "uncertain", "equivocal", "possible"]
CLAUSE_BREAKS = {"but", "however", "although", "though", "whereas", "except", "while"}
WINDOW_BEFORE, WINDOW_AFTER = 6, 4

_WORD = re.compile(r"[a-z0-9]+|\?")
_SENTENCE = re.compile(r"[.;:\n!]+|(?<=\?)\s+")  # a '?' stays with its clause: it marks uncertainty
_COMMA = re.compile(r",(?!\s*(?:or|and|nor)\b)")
# "No A, B or C": a negated list keeps its negation across the commas
_NEGATED_LIST = re.compile(r"^\s*(?:no|without|neither|negative for|free of|no evidence of)\b.*\b(?:or|nor)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    concept: str
    status: str
    evidence: str | None = None
    span: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return {"status": self.status, "evidence": self.evidence, "span": list(self.span) if self.span else None}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _close(word: str, target: str) -> bool:
    """Equal, or one edit (insert, delete, substitute, swap neighbours) apart for words of 5+ letters."""
    if word == target:
        return True
    if min(len(word), len(target)) < 5 or abs(len(word) - len(target)) > 1:
        return False
    if len(word) == len(target):
        diff = [i for i, (a, b) in enumerate(zip(word, target)) if a != b]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == target[diff[1]] and word[diff[1]] == target[diff[0]])
    short, long_ = sorted((word, target), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _find_phrase(words: list[str], phrase: list[str], start: int = 0) -> list[int]:
    n = len(phrase)
    return [i for i in range(start, len(words) - n + 1) if all(_close(words[i + k], phrase[k]) for k in range(n))]


def _has_cue(words: list[str], cues: list[str]) -> bool:
    return any(_find_phrase_exact(words, cue.split()) for cue in cues)


def _find_phrase_exact(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def _sections(text: str, modalities: list[str]) -> list[tuple[str | None, int, int]]:
    """(modality or None, start, end) character ranges; a header is a known name followed by ':' or a newline."""
    names = sorted(((h, m) for m in modalities for h in SECTION_HEADERS.get(m, [m.lower()])), key=lambda x: -len(x[0]))
    pattern = re.compile(r"(?im)(?:^|(?<=[.\n]))\s*(" + "|".join(re.escape(h).replace(r"\ ", r"[\s-]*") for h, _ in names) + r")\s*(?:[:\-]|\n)")
    lookup = {h: m for h, m in names}
    marks = [(m.start(), m.end(), lookup[re.sub(r"[\s-]+", " ", m.group(1).lower()).strip()]) for m in pattern.finditer(text)]
    if not marks:
        return [(None, 0, len(text))]
    ranges = [(None, 0, marks[0][0])] if marks[0][0] > 0 else []
    for i, (_, body, modality) in enumerate(marks):
        ranges.append((modality, body, marks[i + 1][0] if i + 1 < len(marks) else len(text)))
    return ranges


def _split_at(pattern: re.Pattern, text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The (start, end) spans of text[start:end] between the matches of ``pattern``."""
    spans, cursor = [], start
    for match in pattern.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    return spans


def _clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence pieces of text[start:end], cut again at commas (not inside a negated list) and 'but', 'however'..."""
    pieces = []
    for a, b in _split_at(_SENTENCE, text, start, end):
        pieces += [(a, b)] if _NEGATED_LIST.match(text[a:b]) else _split_at(_COMMA, text, a, b)
    result = []
    for a, b in pieces:
        cut = a
        for word in re.finditer(r"[A-Za-z]+", text[a:b]):
            if word.group().lower() in CLAUSE_BREAKS:
                result.append((cut, a + word.start()))
                cut = a + word.end()
        result.append((cut, b))
    return [(a, b) for a, b in result if text[a:b].strip()]


def _status(before: list[str], after: list[str]) -> str:
    if _has_cue(before, UNCERTAIN_BEFORE) or _has_cue(after, UNCERTAIN_AFTER) or "?" in before + after:
        return UNCERTAIN
    if _has_cue(before, NEGATION_BEFORE) or _has_cue(after, NEGATION_AFTER):
        return ABSENT
    return PRESENT


def _clause_findings(text: str, a: int, b: int, concepts: list[Concept]) -> list[Finding]:
    spans = [(m.start() + a, m.end() + a, m.group()) for m in _WORD.finditer(text[a:b].lower())]
    words = [w for _, _, w in spans]
    candidates = []  # (length, first word, concept)
    for concept in concepts:
        for phrase in concept.phrases:
            tokens = _words(phrase)
            candidates += [(len(tokens), i, concept) for i in _find_phrase(words, tokens)]
    taken: set[int] = set()
    found = []
    reach = len(words) if _NEGATED_LIST.match(text[a:b]) else WINDOW_BEFORE  # a negated list's cue reaches its last item
    for length, i, concept in sorted(candidates, key=lambda c: (-c[0], c[1])):  # longest phrase wins an overlap
        if taken & set(range(i, i + length)):
            continue
        taken |= set(range(i, i + length))
        before, after = words[max(0, i - reach) : i], words[i + length : i + length + WINDOW_AFTER]
        span = (spans[i][0], spans[i + length - 1][1])
        found.append(Finding(concept.key, _status(before, after), text[a:b].strip(), span))
    return found


def extract_concepts(report: str, vocabulary: Vocabulary) -> dict[str, Finding]:
    """Every concept of the vocabulary with its status and the clause that says so."""
    result = {c.key: Finding(c.key, NOT_MENTIONED) for c in vocabulary.concepts}
    for modality, start, end in _sections(report, list(vocabulary.modalities)):
        concepts = [c for c in vocabulary.concepts if modality is None or c.modality == modality]
        for a, b in _clauses(report, start, end):
            for finding in _clause_findings(report, a, b, concepts):
                if _RANK[finding.status] > _RANK[result[finding.concept].status]:
                    result[finding.concept] = finding
    return result


def findings_json(findings: dict[str, Finding]) -> dict[str, dict]:
    return {key: f.to_dict() for key, f in findings.items()}
