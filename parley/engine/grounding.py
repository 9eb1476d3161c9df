"""Is a caller's question about anything a grounded agent knows, and is the model's answer backed by a fact?

A small model answers "yes" to almost any question about a business, known or not ("Is there a pool?"
→ "Yes, there is a pool."). Told to admit what its facts do not say, it still does not: it cannot tell
what it does not know. An embedding model can tell how close a question is to each fact, though. When
a question is far from all of them (and from ordinary small talk, and from what the agent's tools do),
the agent's reply is held: a tool call still goes ahead, but words are replaced by the agent's
``unknown_answer``. Questions only: a statement ("Book me for Tuesday") is left to the model and its
tools.

A question near a fact can still get a wrong "yes" ("Can I come on Monday?" → "Yes, you can." when the
facts say Mondays are closed): the model echoes the question back. An answer that restates a fact is
closer to that fact than to the question; an echo of the question is closer to the question. So a reply
that opens with "yes" is checked before it is said, and one that no fact backs is replaced by the facts
that answer the question (a fact that close to it answers it), or by an honest "I can't confirm that" and
the facts only loosely about it, or by the ``unknown_answer`` when it is about none. The model's wrong
"yes" becomes the facts that answer it ("The bistro is closed on Mondays."), and a right one loses only
its directness.

The same small model also gets a "no" wrong ("Do you move to Chicago?" → "Sorry, we're closed on
Chicago.", copied from the example call), and says "I don't know" to what a fact plainly answers ("Can
you groom my cat?", when it knows "We groom dogs only, not cats."). So an answer that opens with "no" or
"sorry" is checked like a "yes", and an admission of not knowing is replaced by the facts when one is as
close to the question as a fact that answers it. When a fact is that close, any answer's first sentence
is checked ("What time do you close on Saturday?" → "We close on Saturdays."). A checked answer that
states a figure nothing the agent was told holds ("open from 7 am to 2 pm" for a fact saying 8 pm) is
not backed either, however close it sits to the fact (``engine/figures.py``). The word lists are
English: in other languages only answers to questions a fact answers are checked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from parley.engine.answer_types import DECISIVE, AnswerKind, affirms_unnamed_place, asked_for, held_by
from parley.engine.figures import made_up, stated, told
from parley.providers.embeddings.base import SentenceEmbedder, Vectors

MIN_SIMILARITY = 0.3
"""Below this cosine similarity to every fact, a question is about something else (all-MiniLM-L6-v2:
unrelated sentences mostly score 0.0–0.25, a question and the fact answering it 0.4–0.9)."""
SMALL_TALK = (
    "Hello, how are you?",
    "Who am I speaking with?",
    "What is your name?",
    "Can you hear me?",
    "Are you a real person or a robot?",
    "What can you help me with?",
    "Sorry, could you say that again?",
    "Is that right?",
)
"""Questions any agent may answer without facts: close to one of these, a question is not held."""
SMALL_TALK_SIMILARITY = 0.5
ACTION_SIMILARITY = 0.3
"""At or above this similarity to one of the agent's tool descriptions, a question asks for an action
("Can a mechanic call me with a quote?"), not for a fact: it is left to the model and its tools."""
MIN_SUPPORT = 0.5
"""A "yes" sentence less similar than this to every fact is not backed by one: restating a fact scores
0.6–1.0 against it, an echo of the question ("Yes, we have live music.") 0.3–0.5."""
ANSWERED_SIMILARITY = 0.5
"""At or above this similarity to a fact, the facts answer a question: "I don't know" is wrong (a question
and the fact answering it score 0.5–0.9; questions no fact answers stayed under 0.4 on the bench)."""
RELATED_FACTS = 2
"""At most this many facts the question is about are said in place of an unbacked answer."""
UNSURE_LEAD = "I can't confirm that, but here is what I know:"
_AFFIRMATIVE = re.compile(
    r"^\W*(?:yes|yeah|yep|sure|absolutely|certainly|definitely|of course)\b", re.IGNORECASE
)
_NEGATIVE = re.compile(
    r"^\W*(?:no|nope|sorry|unfortunately|(?:i'?m|i am) (?:sorry|afraid|not)"
    r"|i (?:don'?t|do not|can'?t|cannot)"
    r"|(?:we|it|they|there|that|this|you)(?:'re|'s)?\s+(?:not|no|never|can'?t|cannot|won'?t"
    r"|(?:do|does|is|are|can|will|have|has)(?:n'?t|\s+not|\s+no)))\b",
    re.IGNORECASE,
)
"""How a "no" opens ("No, …", "We don't …", "There is no …"), and an admission of not knowing ("I'm
sorry, I don't know that.")."""
OPENING_WORDS = 3
"""Words enough to tell whether an answer opens like a "yes" or a "no" ("I do not …")."""
_ADMITS_NOT_KNOWING = re.compile(
    r"\b(?:(?:don'?t|do not|not) (?:know|sure)|no information|(?:can'?t|cannot) (?:say|confirm|tell))\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"\b(?:no|not|never|none|nobody|nothing|neither|nor|cannot|without)\b|n'?t\b", re.IGNORECASE
)
"""A "not" in English words (a "no", "never", "don't", "can't" …)."""
_CLAUSE_BREAK = re.compile(r";|[.!?](?:\s|$)|,?\s+but\s+|,\s*(?=(?:not|no|never)\b)", re.IGNORECASE)
"""Where a fact's clauses part: "We treat dogs and cats; we do not treat birds." has two, and "We groom
dogs only, not cats." has "not cats" as a clause of its own."""
_FUNCTION_WORDS = frozenset(
    """a an the of at on in for to by from with and or is are was were be am do does did can could will
    would we you i it they he she there this that these those our your my its their me us them yes
    yeah sure absolutely certainly definitely course have has had not no never""".split()  # noqa: SIM905
)
"""Words that say nothing of what a clause is about (negations are weighed on their own)."""
_MIN_STEM = 4
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_LEAD = (
    r"(?:(?:so|and|but|ok(?:ay)?|oh|um+|uh+|hm+|well|hi|hello|hey|also|sorry|actually|right|alright|then|"
    r"yes|yeah|no)\W+)*"
)
"""Words a question may open with before it asks ("Okay, so is there parking")."""
_SUBJECT = (
    r"(?:i|you|we|they|he|she|it|there|this|that|these|those|any\w*|some\w*|every\w*|an?|the|my|your|our|"
    r"his|her|their|its|dr|doctor|mr|mrs|ms|miss|(?-i:[A-Z]\w*))"
)
_ASKS = re.compile(
    rf"^\W*(?P<lead>{_LEAD})"
    rf"(?:(?:is|are|am|does|did|can|could|will|would|shall|should|may|might|has)\W+{_SUBJECT}\b"
    rf"|do\W+(?!(?:it|that|this)\b){_SUBJECT}\b"  # "Do it." is an order, "Do you …" a question
    r"|(?:what|when|where|who|why|how)\W+(?:s|re|is|are|was|were|do|does|did|can|could|will|would|should"
    r"|time|day|much|many|long|often|far|kind|about)\b"
    r"|which\W+(?!(?:is|was)\b)[a-z]+\b"
    r"|(?:i\W+(?:was|am|m)\W+wondering|i\W+wonder|i\W+(?:d|would)\W+like\W+to\W+know|i\W+(?:want|need)\W+to\W+know"
    r"|(?:please\W+)?tell\W+me|just\W+(?:checking|wondering))\W+(?:if|whether|what|when|where|who|why|how|which)\b)",
    re.IGNORECASE,
)
"""An English question's opening: a verb before its subject ("is there", "can the mechanic"), a
question word before a verb or what it asks about ("what time", "how much"), or a question asked
indirectly ("I was wondering if you …", "I'd like to know whether …"). A statement cut short ("Would be
great", "Will do") or a clause ("What I need is …", "Which is fine") does not ask."""
_MIN_QUESTION_WORDS = 3


@dataclass(frozen=True, slots=True)
class UnbackedAnswer:
    """A "yes" or "no" no fact backs, or an "I don't know" a fact answers, and the facts the question is
    about (closest first; maybe none)."""

    support: float
    """Its similarity to the closest fact."""
    related: tuple[str, ...]
    answered: bool = False
    """The related facts answer the question (they are that close to it): said as the answer, with no
    hedge before them. Facts only loosely about it are said after ``UNSURE_LEAD``."""
    repeated: bool = False
    """The answer was a copy of one the agent gave to another question (``engine/repeats.py``): not an
    answer to this one, whatever facts are near it, so a request near a tool is still matched to it."""

    @property
    def hedged(self) -> bool:
        return bool(self.related) and not self.answered

    def instead(self, unknown_answer: str) -> str:
        """What the agent says in place of the unbacked answer."""
        if not self.related:
            return unknown_answer
        return " ".join(self.related if self.answered else [UNSURE_LEAD, *self.related])


def is_question(text: str) -> bool:
    """Ends with a question mark, or opens like an English question ("is there …", "what time …").

    Speech recognition punctuates most questions, but not one it half misheard: "Is Dr. Brooks working
    this week?" came back as "is doctor. Merk's working this week." Its first words still ask. The
    message's opening and its last sentence are read ("My car is noisy. Can a mechanic call me")."""
    if text.rstrip().endswith("?"):
        return True
    parts = _SENTENCE.findall(text)
    return bool(parts) and (_opens_like_a_question(text) or _opens_like_a_question(parts[-1]))


def _opens_like_a_question(text: str) -> bool:
    asks = _ASKS.match(text)
    return asks is not None and len(text[asks.end("lead") :].split()) >= _MIN_QUESTION_WORDS


def opens_with_yes(text: str) -> bool:
    return _AFFIRMATIVE.match(text) is not None


def is_checked_answer(text: str) -> bool:
    """An answer whose first sentence is checked against the facts: a "yes", a "no", an "I don't know".
    A question back ("Sorry, could you say that again?") claims nothing."""
    return (opens_with_yes(text) or _NEGATIVE.match(text) is not None) and not text.rstrip().endswith("?")


def sentences(text: str) -> list[str]:
    """The text and, when it has more than one, each of its sentences: a request after a long
    description ("My car makes a noise. Can a mechanic call me?") is judged by its own words too."""
    parts = [p.strip() for p in _SENTENCE.findall(text) if p.strip()]
    return [text, *parts] if len(parts) > 1 else [text]


class GroundingCheck:
    """Embeds the agent's facts once (off the event loop), then judges questions against them."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        facts: Sequence[str],
        *,
        passages: Callable[[str], Sequence[str]] | None = None,
        actions: Sequence[str] = (),
        instructions: str = "",
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self._embedder = embedder
        self._facts = list(facts)
        self._passages = passages
        self._actions = [a for a in actions if a.strip()]
        """What the agent's tools do (their descriptions)."""
        self._instructions = instructions
        """The agent's prompt: its figures in digits are the agent's to say (its words are not figures:
        "answer in one or two sentences")."""
        self._min = min_similarity
        self._figures: set[str] | None = None
        self._vectors: _Vectors | None = None
        self._fact_kinds: set[AnswerKind] | None = None
        self._fact_words: set[str] | None = None

    async def off_knowledge(self, text: str) -> bool:
        """True for a question that nothing the agent knows is about. Asked where the business is, with
        an address among the facts, it is about that, however far the embedding puts them apart (and
        so for the other ``DECISIVE`` kinds of answer)."""
        if not is_question(text) or self._kinds_known(text) & DECISIVE:
            return False
        return await asyncio.to_thread(self._far_from_facts, text, self._retrieved(text))

    async def answers(self, question: str) -> bool:
        """Whether a fact answers ``question``: is at least ``ANSWERED_SIMILARITY`` close to it, or holds
        the kind of answer it asks for (an address, an amount: ``engine/answer_types.py``)."""
        if not self._facts or not is_question(question):
            return False
        if self._kinds_known(question):
            return True
        closest = await asyncio.to_thread(
            lambda: _closeness(self._known().facts, self._embedder.embed([question]))
        )
        return closest >= ANSWERED_SIMILARITY

    def asks_known(self, question: str, kind: AnswerKind) -> bool:
        """Whether ``question`` asks for a ``kind`` of answer some fact holds (a price, an address)."""
        return is_question(question) and kind in self._kinds_known(question)

    def _kinds_known(self, question: str) -> set[AnswerKind]:
        """The kinds of answer ``question`` asks for that some fact holds."""
        if self._fact_kinds is None:
            self._fact_kinds = {kind for fact in self._facts for kind in held_by(fact)}
        return asked_for(question) & self._fact_kinds

    async def unbacked_answer(
        self, question: str, answer: str, *, any_answer: bool = False, given: Sequence[str] = ()
    ) -> UnbackedAnswer | None:
        """For a question's answer (its first sentence) that opens with "yes" or "no" (with
        ``any_answer``, whatever it opens with; never a question back): None when the facts back it (or
        it is no such answer), else what to say instead. ``given``: what else the agent was told (the
        caller's words, tool results), whose figures it may repeat."""
        if not self._facts or not is_question(question) or answer.rstrip().endswith("?"):
            return None
        if not any_answer and not is_checked_answer(answer):
            return None
        return await asyncio.to_thread(self._unbacked, question, answer, self._words(question), given)

    async def in_place_of(self, question: str, answer: str) -> UnbackedAnswer:
        """What to say instead of ``answer``, a copy of an earlier reply: the facts about ``question``
        (maybe none: then the unknown answer)."""
        if not self._facts:
            return UnbackedAnswer(0.0, (), repeated=True)

        def judge() -> UnbackedAnswer:
            said, asked = self._embedder.embed([answer, question])
            support = float(np.max(self._known().facts @ said))
            closeness = self._known().facts @ asked
            return self._instead(closeness, support, self._decisive(question), repeated=True)

        return await asyncio.to_thread(judge)

    async def backs(self, question: str, answer: str) -> bool:
        """Whether a fact backs ``answer`` (it restates one more than it echoes ``question``)."""
        if not self._facts:
            return False
        return await asyncio.to_thread(lambda: self._backed(*self._embedder.embed([answer, question]))[0])

    def _backed(self, said: Vectors, asked: Vectors) -> tuple[bool, float]:
        """Whether a fact backs the answer ``said`` to the question ``asked`` (their vectors), and its
        similarity to the closest fact."""
        support = float(np.max(self._known().facts @ said))
        return support >= MIN_SUPPORT and support >= float(said @ asked), support

    def _known(self) -> _Vectors:
        if self._vectors is None:
            embed = self._embedder.embed
            self._vectors = _Vectors(
                embed(self._facts), embed(SMALL_TALK), embed(self._actions) if self._actions else None
            )
        return self._vectors

    def _far_from_facts(self, text: str, passages: Sequence[str] = ()) -> bool:
        """Far from every fact, from each sentence of the document passages retrieved for it, from
        small talk and from what the tools do. Keyword retrieval returns a passage for any shared word
        ("delivery", "cost"), so a passage counts only when it is about the question too: with a
        document replaced, "How much is delivery to Mars?" found only "Our office is in Oslo." and
        the model made up a price."""
        known = self._known()
        question = self._embedder.embed(sentences(text))
        near_talk = float(np.max(known.talk @ question.T))
        near_action = float(np.max(known.actions @ question.T)) if known.actions is not None else -1.0
        lines = passage_sentences(passages)
        near_passage = _closeness(self._embedder.embed(lines), question) if lines else -1.0
        return (
            max(_closeness(known.facts, question), near_passage) < self._min
            and near_talk < SMALL_TALK_SIMILARITY
            and near_action < ACTION_SIMILARITY
        )

    def _unbacked(
        self, question: str, answer: str, known: set[str], given: Sequence[str] = ()
    ) -> UnbackedAnswer | None:
        said, asked = self._embedder.embed([answer, question])
        closeness = self._known().facts @ asked
        decisive = self._decisive(question)
        answered = float(np.max(closeness)) >= ANSWERED_SIMILARITY or bool(decisive)
        backed, support = self._backed(said, asked)
        if _ADMITS_NOT_KNOWING.search(answer):
            backed = not answered  # right when no fact answers it
        elif backed:
            # Asked for a kind of answer some facts hold (an address, the towns served), the answer must
            # come from one of those: "Yes, QuickFix has three licensed plumbers." restates a fact, but
            # does not answer "Do you also come out to Capital City?".
            best = int(np.argmax(self._known().facts @ said))
            fact = self._facts[best]
            backed = (
                not contradicts(question, answer, fact)
                and not echoes_question(question, answer, known)
                and (not decisive or best in decisive)
                and not affirms_unnamed_place(question, answer, fact)
                and not self._no_amount(question, answer)
                and not self._made_up_figures(question, answer, given)
            )
        if backed:
            return None
        return self._instead(closeness, support, decisive, kinds=self._holding(question))

    def _instead(
        self,
        closeness: Vectors,
        support: float,
        decisive: set[int],
        *,
        kinds: set[int] | None = None,
        repeated: bool = False,
    ) -> UnbackedAnswer:
        """The facts to say in place of an answer, from the question's ``closeness`` to each fact and the
        facts holding the kind of answer it asks for (``decisive``, said as the answer; ``kinds``, a
        price, said after the hedge), closest first."""
        close = float(np.max(closeness)) >= ANSWERED_SIMILARITY
        floor = ANSWERED_SIMILARITY if close else self._min
        held = decisive | (kinds or set())
        ranked = [int(i) for i in np.argsort(-closeness) if closeness[i] >= floor or int(i) in held]
        related = tuple(self._facts[i] for i in ranked[:RELATED_FACTS])
        return UnbackedAnswer(round(support, 3), related, close or bool(decisive), repeated)

    def _words(self, question: str) -> set[str]:
        """The content words of the facts, of what the tools do and of the document passages retrieved
        for ``question``: what the agent may say without echoing the caller."""
        if self._fact_words is None:
            self._fact_words = _content_words(" ".join([*self._facts, *self._actions]))
        return self._fact_words | _content_words(" ".join(self._retrieved(question)))

    def _retrieved(self, question: str) -> list[str]:
        """The document passages retrieved for ``question`` (the session's context keeps the last
        search, so the question's check, its answer's and the model's request share one)."""
        return [] if self._passages is None else list(self._passages(question))

    def _made_up_figures(self, question: str, answer: str, given: Sequence[str]) -> set[str]:
        """The figures ``answer`` states that nothing the agent was told holds (``engine/figures.py``)."""
        if self._figures is None:
            self._figures = told([*self._facts, *self._actions]) | stated(self._instructions)
        return made_up(answer, self._figures | told([question, *self._retrieved(question), *given]))

    def _no_amount(self, question: str, answer: str) -> bool:
        """A price asked, with prices among the facts, and an answer that names none: "You can call
        Citywide Locksmith to get into your house." to "How much to get into my house?"."""
        return AnswerKind.PRICE in self._kinds_known(question) and AnswerKind.PRICE not in held_by(answer)

    def _decisive(self, question: str) -> set[int]:
        """The facts holding a ``DECISIVE`` kind of answer ``question`` asks for (an address for "where")."""
        return self._holding(question, DECISIVE)

    def _holding(self, question: str, among: frozenset[AnswerKind] | None = None) -> set[int]:
        """The facts holding a kind of answer ``question`` asks for (of the kinds ``among``)."""
        kinds = self._kinds_known(question) & (among if among is not None else set(AnswerKind))
        return {i for i, fact in enumerate(self._facts) if held_by(fact) & kinds} if kinds else set()


MAX_PASSAGE_SENTENCES = 48
"""Sentences of retrieved passages embedded per question (a few tens of milliseconds on this CPU)."""


def passage_sentences(passages: Sequence[str]) -> list[str]:
    """The sentences (and list items) of document passages, each judged on its own: a whole passage
    is about many things, and its embedding about none of them closely."""
    found = [
        piece.strip()
        for passage in passages
        for line in passage.splitlines()
        for piece in _SENTENCE.findall(line)
        if piece.strip()
    ]
    return found[:MAX_PASSAGE_SENTENCES]


def contradicts(question: str, answer: str, fact: str) -> bool:
    """Whether an answer's "yes" or its claim says the opposite of the fact closest to it.

    A sentence embedding hardly weighs a "not": "Yes, we have showers at the studio." restates "We have
    no showers at the studio." as closely as a right answer would, and "Yes, we do not install sprinkler
    systems." restates its fact word for word after a "yes" that says the opposite. So an affirmative
    claim is compared with the part of the fact it is about (its clause sharing most words), and a
    "yes" followed by a "not" answers a question that had none wrongly. A "no" is not judged here:
    "No, we're closed on Sundays." is right with no "not" in its fact."""
    if not opens_with_yes(answer) and _NEGATIVE.match(answer) is not None:
        return False
    claim = _AFFIRMATIVE.sub("", answer, count=1)
    if _NEGATED.search(claim):
        return opens_with_yes(answer) and not _NEGATED.search(question)
    about = _content_words(claim)
    clauses = [c for c in _CLAUSE_BREAK.split(fact) if c.strip()]
    shared = [sum(_shares(word, about) for word in _content_words(clause)) for clause in clauses]
    best = max(shared, default=0)
    return best > 0 and any(_NEGATED.search(c) for c, n in zip(clauses, shared, strict=True) if n == best)


def echoes_question(question: str, answer: str, known: set[str]) -> bool:
    """Whether an answer's claim takes a word from the question that nothing the agent knows has.

    Asked "Do you board pets over the holidays?", the model said "Yes, Harbor Veterinary Clinic is open
    on holidays.": close to "Harbor Veterinary Clinic is open weekdays …" in the embedding, so it passed
    as that fact restated, while "holidays", the very thing asked, came from the question alone. A "no"
    is not judged here (it claims nothing the caller may act on), nor an admission of not knowing."""
    if _NEGATIVE.match(answer) is not None and not opens_with_yes(answer):
        return False
    claim = _content_words(_AFFIRMATIVE.sub("", answer, count=1))
    asked = _content_words(question)
    return any(_shares(word, asked) and not _shares(word, known) for word in claim)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _FUNCTION_WORDS}


def _shares(word: str, words: set[str]) -> bool:
    """``word`` is in ``words``, or shares a stem with one ("shower" and "showers")."""
    return word in words or any(
        len(w) >= _MIN_STEM and len(word) >= _MIN_STEM and (w.startswith(word) or word.startswith(w))
        for w in words
    )


@dataclass(frozen=True, slots=True)
class _Vectors:
    facts: Vectors
    talk: Vectors
    actions: Vectors | None


def _closeness(facts: Vectors, texts: Vectors) -> float:
    """How close the closest fact is to any of ``texts`` (-1 with no facts)."""
    return float(np.max(facts @ texts.T)) if len(facts) else -1.0
