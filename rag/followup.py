"""Is a question a follow-up that needs the conversation, or does it stand alone?

Rules, in order (English and German; the first that applies decides):

1. No previous question: standalone.
2. It opens like a continuation ("and ...", "what about ...", "und ...", "was ist mit ..."): follow-up.
3. It has no word of its own beyond question words, auxiliaries and pronouns ("Why?", "When was
   that?", "Und wann?"): follow-up (ellipsis).
4. A pronoun with nothing before it in the question that it could stand for: follow-up. Could stand
   for: a name, number or quoted title, a noun after an article ("the tram"), a German capitalised
   noun. So "When will construction of the tram start and how much will it cost?" is not one. An
   object pronoun ("them", "about it", "ihnen", "dagegen") or a bare "that"/"das" cannot stand for
   the subject of its own clause ("What did Apple say about it?"): its antecedent must be in an
   earlier clause, unless the question is long (more than LOCAL content words: it carries its own
   context). A bare "that"/"this" is a pronoun only at the end or after an auxiliary, question word or
   preposition ("When was that?", "Is that true?"); elsewhere it joins clauses ("suggest that ...").
   "that game" counts as a pronoun in a short question; "this region" does not (question sets say
   "this person", "diese Kommission" in questions meant to stand alone). Not pronouns: "is there",
   "gibt es"; a possessive before a name ("Outside of its use of cars, what is California famous
   for?"); a German "das"/"der" before a noun (an article) or after a comma (a relative pronoun).
5. A comparison with something unnamed ("the other banks", "who else", "die anderen"): follow-up.
6. A short question (at most SHORT content words) that names nothing of its own (no name, number or
   quoted title; a German noun after an article is not a name): follow-up ("By what margin?",
   "Ist der Kauf schon abgeschlossen?").
7. Otherwise: standalone.

Deterministic and fast (tens of microseconds): no model decides; the LLM still rewrites the
follow-ups. Figures: benchmarks/followup.py, BENCHMARKS.md."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: At most this many content words and nothing named: too little to stand alone (rule 6).
SHORT = 2
#: Up to this many content words an object pronoun cannot refer inside its own clause (rule 4).
LOCAL = 4


@dataclass(frozen=True)
class FollowUpVerdict:
    follow_up: bool
    reason: str  # short, for logs and notes


_OPENERS = re.compile(
    r"^\s*(and|but|also|or|so|plus|then|what about|how about|what else|anything else|same for|"
    r"und|aber|auch|oder|sonst|dann|was ist mit|wie ist es mit|wie steht es mit|wie sieht es mit|genauso)\b",
    re.I)

# Words that name nothing: question words, auxiliaries, articles, prepositions, particles, verbs of
# asking. A question of only these (and pronouns) is elliptical.
_FUNCTION = frozenset("""
    what which who whom whose when where why how whether much many long often far old
    is are was were be been being am do does did done has have had having will would can could shall should may
    might must 's 're 'll 'd s t not no yes n't
    the a an of to in on at by for from with about into over under than as then there here now still yet again
    ever also too just only so very more most less least exactly really actually please
    and or but if because since until while after before during per via against between among
    tell me us say said explain describe give show know elaborate mean means meant happen happened happens
    get got go went one ones thing things i you we my your our
    was welche welcher welches welchen welchem wer wen wem wessen wann wo woher wohin warum wieso weshalb wie
    viel viele vielen lange oft genau eigentlich denn bitte noch schon wieder jetzt nun dann auch nur sehr mehr
    ist sind war waren bin bist sei wäre wären wird werden wurde wurden worden hat haben hatte hatten habe hätte
    kann können konnte konnten soll sollen sollte muss müssen musste darf will wollte wollten
    der die das den dem des ein eine einer eines einem einen kein keine sich
    von vom zu zum zur im in am an auf aus bei beim mit nach seit über unter vor für um durch gegen ohne bis ab als
    und oder aber wenn weil dass ob nicht nein ja
    erzähl erzähle erzählen sag sage sagen erkläre erklären mir uns gibt gab geben passiert passierte
    ich du wir mein dein unser
    """.split())
# Pronouns by what they may refer to inside their own question (rule 4).
_POSSESSIVE = frozenset("its their theirs his her hers sein seine seinen seinem seiner seines ihr ihre ihren "
                        "ihrem ihrer ihres dessen deren".split())
_SUBJECT = frozenset("they he she er sie es".split())
_OBJECT = frozenset("""them him ihn ihm ihnen there then dort dorthin dahin damals davon dafür dagegen dazu
    darüber daran darauf dabei danach davor darum daraus dies""".split())
_DEMONSTRATIVE = frozenset("this that these those".split())  # pronouns or determiners or "suggest that"
_PROXIMAL = frozenset("diese dieser dieses diesen diesem".split())  # "diese Kommission": a determiner
_SAME = frozenset("same former latter derselbe dieselbe dasselbe".split())
_ANAPHORS = _POSSESSIVE | _SUBJECT | _OBJECT | _DEMONSTRATIVE | _PROXIMAL | _SAME | {"it"}
# German d-words are articles before a noun ("das Spiel") and pronouns alone ("Wer bezahlt das?").
_D_WORDS = frozenset("der die das den dem".split())
_AUX = frozenset("is are was were will would can could did does do has have had should may might must "
                 "ist war wird wurde hat hatte kann konnte".split())
# Before these a bare "that"/"this" is a pronoun ("Is that true?", "about that", "Why is that?").
_PRONOUN_SLOT = _AUX | frozenset("what which who when where why how about after before of for from with by "
                                 "like since than to on in at".split())
# "Is there ...", "Gibt es ...": no reference.
_EXPLETIVE_BEFORE = frozenset("is are was were gibt gab geht ging handelt handelte".split())
_EXPLETIVE_AFTER = frozenset("is are was were gibt gab geht ging handelt".split())
_ARTICLES = frozenset("the a an its their his her our my your of".split())
_DETERMINERS = _ARTICLES | _D_WORDS | _POSSESSIVE | frozenset(
    "des ein eine einer eines einem einen welche welcher welches welchen welchem diese dieser dieses diesen "
    "diesem jene jener jenes kein keine im am beim vom zum zur alle viel viele vielen einige wenige jede jeder "
    "jedes".split())
_CLAUSE_BREAKS = frozenset(", ; and but or while whereas although because when after before if which who "
                           "und aber oder während obwohl weil als wenn nachdem bevor ob dass".split())
_COMPARATIVE = frozenset("other others else another rest andere anderen anderer anderes übrigen".split())
_GERMAN = frozenset("der die das den dem und ist sind wer wie welche welcher welches warum wieso wann wo hat "
                    "haben wurde wird nicht mit für von auf über ein eine es er sie".split())
_ENGLISH = frozenset("the and is are who how which why when where has have were did does do of for "
                     "with it they he she".split())  # not "was": German too
_TOKEN = re.compile(r"[\"“„«‚‘][^\"“”„«»‚‘’]{2,}[\"”“»’]|\d[\d.,:%]*|[^\W\d_][\w'’.&-]*\w|[^\W\d_]|[,;]")


def is_follow_up(question: str, previous: str | None) -> FollowUpVerdict:
    """Whether ``question`` (asked after ``previous``) leans on the conversation."""
    if not previous or not previous.strip():
        return FollowUpVerdict(False, "no previous question")
    if (m := _OPENERS.match(question)) is not None:
        return FollowUpVerdict(True, f"opens with {m.group(1).lower()!r}")
    # "What's" -> "What", "is"; "Tesla's" -> "Tesla"
    tokens = [t for raw in _TOKEN.findall(question) for t in _split_s(raw)]
    words = [t for t in tokens if t not in ",;"]
    content = [t for t in words if _is_content(t)]
    if not content:
        return FollowUpVerdict(True, "elliptical: no word of its own")
    german = sum(w.lower() in _GERMAN for w in words) > sum(w.lower() in _ENGLISH for w in words)
    named = [t for k, t in enumerate(tokens) if _is_named(tokens, k, german)]
    anaphor = _dangling_anaphor(tokens, german, local=len(content) <= LOCAL)
    if anaphor:
        return FollowUpVerdict(True, f"{anaphor!r} has nothing before it in the question to refer to")
    if not named and any(t.lower() in _COMPARATIVE for t in words):
        return FollowUpVerdict(True, "compares with something it does not name")
    if not named and len(content) <= SHORT:
        return FollowUpVerdict(True, f"short and names nothing ({len(content)} content words)")
    return FollowUpVerdict(False, "names its own subject")


def _split_s(token: str) -> list[str]:
    if len(token) > 2 and token[-2:] in ("'s", "’s"):
        stem = token[:-2]
        return [stem, "is"] if stem.lower() in {"it", "what", "that", "who", "where", "how", "there"} else [stem]
    return [token]


def _is_content(token: str) -> bool:
    low = token.lower()
    return not (low in _FUNCTION or low in _ANAPHORS or low in _COMPARATIVE or low in ",;")


def _is_named(tokens: list[str], k: int, german: bool) -> bool:
    """A name, a number or a quoted title. A capitalised first word counts in English unless it is a
    common word; in German a capitalised word after an article is a noun, not a name."""
    token = tokens[k]
    if token[0].isdigit() or token[0] in "\"“„«‚‘":
        return True
    if len(token) > 1 and (token.isupper() or any(c.isupper() for c in token[1:])):
        return True  # acronyms and inner capitals: EZB, JPMorgan
    if not token[0].isupper() or not _is_content(token) or k == 0:
        return False  # "Any", "Google" first: no telling a name from a capitalised word
    return not (german and _after_determiner(tokens, k))


def _after_determiner(tokens: list[str], k: int) -> bool:
    """Whether an article (maybe with an adjective between) comes right before ``tokens[k]``."""
    before = [t.lower() for t in tokens[max(0, k - 2):k]]
    return bool(before) and (before[-1] in _DETERMINERS or (len(before) == 2 and before[0] in _DETERMINERS))


def _dangling_anaphor(tokens: list[str], german: bool, local: bool) -> str | None:
    """The first pronoun with nothing it could stand for before it, or None. ``local``: the
    question is short, so an object pronoun cannot refer inside its own clause."""
    antecedent_clause = -1  # clause number of the latest possible antecedent; -1: none yet
    clause = 0
    for k, token in enumerate(tokens):
        low = token.lower()
        before = tokens[k - 1].lower() if k else ""
        nxt = tokens[k + 1] if k + 1 < len(tokens) else ""
        if low in _CLAUSE_BREAKS:
            clause += 1
            continue
        if low in _D_WORDS:
            if not _d_word_is_pronoun(tokens, k):
                continue
            if before in {",", ";"}:  # relative: ", der das Spiel gewann"
                if antecedent_clause < 0:
                    return token
            elif antecedent_clause < 0 or (local and antecedent_clause >= clause):
                return token
            continue
        if low in _DEMONSTRATIVE:
            if nxt and _is_content(nxt):  # a determiner: "that game", "this region"
                if low in {"that", "those"} and nxt[0].islower() and (antecedent_clause < 0 or local):
                    return token
                continue
            if not (not nxt or nxt in ",;" or (k == 0 and nxt.lower() in _AUX) or before in _PRONOUN_SLOT):
                clause += low == "that"  # "suggest that ...", "the tapes that were"
                continue
        if low in _PROXIMAL and nxt and _is_content(nxt):
            continue  # "diese Kommission"
        # Here a demonstrative is a pronoun: "When was that?", "Is that true?", "That was when?"
        if low in _ANAPHORS:
            if _expletive(tokens, k):
                continue
            subject_it = low == "it" and (k == 0 or before in _AUX or nxt.lower() in _AUX)
            needs_earlier_clause = local and (
                low in _OBJECT or low in _DEMONSTRATIVE or (low == "it" and not subject_it))
            if antecedent_clause < 0 and low in _POSSESSIVE and any(
                    _is_named(tokens, j, german) for j in range(k + 1, len(tokens))):
                continue  # "Outside of its use of cars, what is California famous for?"
            if antecedent_clause < 0 or (needs_earlier_clause and antecedent_clause >= clause):
                return token
            continue
        if _could_be_antecedent(tokens, k, german):
            antecedent_clause = clause
    return None


def _expletive(tokens: list[str], k: int) -> bool:
    """"there" in "is there", "es" in "gibt es": they point at nothing."""
    low = tokens[k].lower()
    if low not in {"there", "es", "it"}:
        return False
    before = tokens[k - 1].lower() if k else ""
    after = tokens[k + 1].lower() if k + 1 < len(tokens) else ""
    if low == "it":
        return after in {"true", "possible", "likely", "known"}  # "is it true that ..."
    return before in _EXPLETIVE_BEFORE or after in _EXPLETIVE_AFTER


def _could_be_antecedent(tokens: list[str], k: int, german: bool) -> bool:
    """Something a later pronoun can stand for: a name, number or quoted title; a German
    capitalised noun; an English noun after an article or "of"."""
    token = tokens[k]
    if _is_named(tokens, k, german):
        return True
    if not _is_content(token):
        return False
    if german:
        return token[0].isupper() and k > 0
    return _after_determiner(tokens, k)


def _d_word_is_pronoun(tokens: list[str], k: int) -> bool:
    """A German "das"/"den"/... with no noun after it (within an adjective) is a pronoun."""
    following = [t for t in tokens[k + 1:k + 3]]
    if not following or following[0] in ",;":
        return True
    first = following[0]
    if first[0].isupper() or first[0].isdigit() or first[0] in "\"“„«‚‘":
        return False  # das Spiel, die EZB, dem „Fischglas“-artigen Helm
    return not (first.lower().endswith(("e", "en", "er", "es", "em")) and len(following) > 1
                and following[1][0].isupper())  # die neue Linie
