"""`sentiment`: labels contacts `positive` or `negative` by the words they use.

A flowgate plugin written in Python. `cargo xtask build-guests` turns this
module into a WebAssembly component with componentize-py; the host then runs
it like any other plugin, in a fresh sandboxed instance per event, with a
deny-all WASI context (no files, sockets or environment).

Every message with text gets a score: +1 for each positive word, -1 for each
negative word, the other way round for a word within three words after a
negation in the same clause ("not good" counts as negative, "not bad" as
positive). Words match whole, ignoring case and accents ("Ótimo" matches
`otimo`). A positive score adds the `positive` label and removes `negative`;
a negative score does the opposite; a score of zero changes no label.

Configuration (comma-separated word lists; each default is shown to the
tenant, who replaces the whole list to change it):

- `positive-words`, `negative-words`: the lexicon.
- `negation-words`: words that flip the polarity of what follows them.

The contact's running tally of positive, negative and neutral messages is
kept in the plugin's state under `tally` (JSON). State is personal data: the
host exports it with the contact's data and erases it with the contact.

Everything at module level runs once, when componentize-py pre-initialises
the interpreter at build time, and is part of the component's memory image:
imports and constants cost nothing per event. Modules imported for the first
time inside `handle` would be looked up on a filesystem the plugin does not
have, so every import is here.
"""

import json
import re
import unicodedata

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, state, types

VERSION = "0.1.0"

POSITIVE = "positive"
NEGATIVE = "negative"
NEUTRAL = "neutral"

DEFAULTS = {
    "positive-words": (
        "good, great, excellent, amazing, awesome, love, loved, perfect, happy, "
        "thanks, thank, helpful, fast, nice, wonderful, recommend, "
        "otimo, bom, boa, obrigado, obrigada, adorei, perfeito, excelente, rapido, "
        "gracias, bueno, genial"
    ),
    "negative-words": (
        "bad, terrible, awful, horrible, hate, worst, broken, slow, late, wrong, "
        "poor, useless, disappointed, angry, refund, "
        "ruim, pessimo, horrivel, atrasado, quebrado, demora, malo"
    ),
    "negation-words": (
        "not, no, never, dont, doesnt, didnt, isnt, wasnt, arent, werent, "
        "cant, cannot, couldnt, wont, wouldnt, nao, nunca, nem, ni"
    ),
}

DESCRIPTIONS = {
    "positive-words": "Comma-separated words that count as positive "
    "(whole words; case and accents are ignored)",
    "negative-words": "Comma-separated words that count as negative "
    "(whole words; case and accents are ignored)",
    "negation-words": "Comma-separated words that flip the polarity of the "
    "next three words in the same clause",
}

# How many words after a negation it applies to: enough for "not very good"
# and "não foi nada bom", short enough that "no, but the rest was great"
# stays positive (a comma ends the clause anyway).
NEGATION_SCOPE = 3
# Limits on a tenant's lists, so a configuration cannot make every event
# expensive; far above what a useful lexicon needs.
MAX_WORDS = 500
MAX_WORD_CHARS = 64

TALLY_KEY = "tally"

CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]\n]+")
WORD = re.compile(r"\w+")
APOSTROPHES = str.maketrans("", "", "'\u2019")


class InvalidConfig(Exception):
    """A configuration value the plugin cannot use; becomes `invalid-config`."""


def fold(text):
    """Lower-case `text` and strip accents, so "Péssimo" and "pessimo" match.

    NFKD splits an accented letter into the letter and combining marks, which
    are then dropped; apostrophes go too, so "don't" becomes "dont".
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.casefold().translate(APOSTROPHES)


def word_list(config, key):
    """The set of folded words configured under `key` (or its default)."""
    raw = config.get(key, DEFAULTS[key])
    words = {fold(word).strip() for word in raw.split(",")}
    words.discard("")
    if not words:
        raise InvalidConfig(f"`{key}` lists no words")
    if len(words) > MAX_WORDS:
        raise InvalidConfig(f"`{key}` lists {len(words)} words; at most {MAX_WORDS}")
    for word in sorted(words):
        if len(word) > MAX_WORD_CHARS or not WORD.fullmatch(word):
            raise InvalidConfig(
                f"`{key}`: `{word[:MAX_WORD_CHARS]}` is not a single word "
                f"of at most {MAX_WORD_CHARS} characters"
            )
    return frozenset(words)


class Lexicon:
    def __init__(self, config):
        self.positive = word_list(config, "positive-words")
        self.negative = word_list(config, "negative-words")
        self.negations = word_list(config, "negation-words")
        both = sorted(self.positive & self.negative)
        if both:
            raise InvalidConfig(
                "words listed as both positive and negative: " + ", ".join(both)
            )

    def score(self, text):
        total = 0
        for clause in CLAUSE_BREAK.split(fold(text)):
            negated_words_left = 0
            for word in WORD.findall(clause):
                if word in self.negations:
                    negated_words_left = NEGATION_SCOPE
                    continue
                polarity = (word in self.positive) - (word in self.negative)
                if negated_words_left:
                    polarity = -polarity
                    negated_words_left -= 1
                total += polarity
        return total


def load_tally():
    """The contact's tally; an unreadable one starts again rather than fail."""
    tally = {POSITIVE: 0, NEGATIVE: 0, NEUTRAL: 0}
    raw = state.get(TALLY_KEY)
    if raw is None:
        return tally
    try:
        stored = json.loads(raw)
        for mood in tally:
            count = stored.get(mood, 0)
            if not isinstance(count, int) or count < 0:
                raise ValueError(f"bad count for {mood}")
            tally[mood] = count
    except (ValueError, AttributeError) as error:
        log.write(log.Level.WARN, "discarding an unreadable tally", [("error", str(error))])
        return {POSITIVE: 0, NEGATIVE: 0, NEUTRAL: 0}
    return tally


def save_tally(tally):
    try:
        state.set(TALLY_KEY, json.dumps(tally, separators=(",", ":")).encode())
    except Err as error:
        # The labels are still right without the tally: keep them, and say
        # why the count did not move.
        log.write(log.Level.WARN, "tally not saved", [("error", repr(error.value))])


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return types.Manifest(
            id="sentiment",
            version=VERSION,
            summary="Labels contacts positive or negative by the words in their messages",
            # Flagging unhappy customers for the support team is part of
            # running the service, like the labeller's keyword rules.
            purposes=["essential.service.operations"],
            # The message text to score, and the labels so that a label the
            # contact already has is not added again.
            fields=["user.content.private", "user.behavior.labels"],
            capabilities=[types.Capability.ADD_LABEL, types.Capability.REMOVE_LABEL],
            # The only labels it writes; the host drops any other.
            labels=[types.LabelRule_Exact(POSITIVE), types.LabelRule_Exact(NEGATIVE)],
            config=[
                types.ConfigKey(
                    name=key,
                    description=DESCRIPTIONS[key],
                    required=False,
                    default_value=DEFAULTS[key],
                )
                for key in ("positive-words", "negative-words", "negation-words")
            ],
        )

    def handle(self, event):
        # Configuration is checked on every event, messages or not, so a
        # tenant learns about a bad list at once.
        try:
            lexicon = Lexicon(dict(event.config))
        except InvalidConfig as error:
            raise Err(types.PluginError_InvalidConfig(str(error))) from None

        message = event.message
        if (
            event.trigger != types.Trigger.MESSAGE_RECEIVED
            or message is None
            or message.text is None
        ):
            return []

        score = lexicon.score(message.text)
        mood = POSITIVE if score > 0 else NEGATIVE if score < 0 else NEUTRAL
        tally = load_tally()
        tally[mood] += 1
        save_tally(tally)
        # Counts only: the log must not repeat what the contact wrote.
        log.write(
            log.Level.INFO,
            f"message scored {mood}",
            [("score", str(score))] + [(name, str(count)) for name, count in tally.items()],
        )

        if mood == NEUTRAL:
            return []
        opposite = NEGATIVE if mood == POSITIVE else POSITIVE
        # `labels` is None when the tenant did not grant them: then add and
        # remove anyway and let the host ignore changes that change nothing.
        labels = event.contact.labels
        actions = []
        if labels is None or mood not in labels:
            actions.append(types.Action_AddLabel(mood))
        if labels is None or opposite in labels:
            actions.append(types.Action_RemoveLabel(opposite))
        return actions
