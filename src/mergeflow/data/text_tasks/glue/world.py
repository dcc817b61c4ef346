"""The shared world the GLUE-shaped tasks talk about: people doing things to objects, somewhere, at some time.

Every pair task (paraphrase, entailment, answerability) and the acceptability task draw their sentences from these
events, so tasks with the same form see the same kind of pairs and differ only in the decision they must make (is
it the same statement? does it follow? does it answer?). That shared input distribution is where task vectors
interfere, as they do on GLUE. Everything here is invented word lists and rules; nothing is copied from a dataset.

An :class:`Event` is rendered in several meaning-preserving surface forms (active or passive voice, a synonym verb,
the time fronted) and changed by named edits that the tasks label differently: dropping or generalising a detail
(the result follows from the original but says less), adding one (it may or may not hold), swapping who or what
(another event), negating or reversing the verb (contradiction).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mergeflow.data.text_tasks.grammar import capitalise, pick


@dataclass(frozen=True)
class Thing:
    """An object phrase and a more general phrase that it implies ("a loaf of bread" -> "some food")."""

    phrase: str
    general: str


@dataclass(frozen=True)
class Verb:
    """A transitive verb's forms, a synonym with the same meaning, and (if any) a verb that contradicts it."""

    base: str
    past: str
    participle: str
    synonym_base: str
    synonym_past: str
    synonym_participle: str
    things: tuple[Thing, ...]
    opposite_past: str | None = None
    takes_people: bool = False  # the object is a person: swapping the roles makes another event


def _things(*pairs: tuple[str, str]) -> tuple[Thing, ...]:
    return tuple(Thing(phrase, general) for phrase, general in pairs)


VERBS: tuple[Verb, ...] = (
    Verb("buy", "bought", "bought", "purchase", "purchased", "purchased",
         _things(("a loaf of bread", "some food"), ("a red bicycle", "a bike"), ("two concert tickets", "some tickets"),
                 ("a wool coat", "some clothes")), opposite_past="sold"),
    Verb("fix", "fixed", "fixed", "repair", "repaired", "repaired",
         _things(("the leaking tap", "something in the kitchen"), ("the garden fence", "something in the garden"),
                 ("an old radio", "a device"), ("the broken chair", "some furniture")), opposite_past="broke"),
    Verb("write", "wrote", "written", "compose", "composed", "composed",
         _things(("a long letter", "some text"), ("the annual report", "a document"), ("a song for the choir", "some music"),
                 ("a short poem", "some text"))),
    Verb("clean", "cleaned", "cleaned", "tidy", "tidied", "tidied",
         _things(("the whole flat", "a home"), ("the garage", "a building"), ("the kitchen floor", "a floor"),
                 ("the shop windows", "some windows")), opposite_past="dirtied"),
    Verb("open", "opened", "opened", "unlock", "unlocked", "unlocked",
         _things(("the front door", "a door"), ("the main gate", "a gate"), ("the old safe", "a container"),
                 ("the storage room", "a room")), opposite_past="closed"),
    Verb("win", "won", "won", "take", "took", "taken",
         _things(("the chess final", "a competition"), ("the baking contest", "a competition"),
                 ("the village race", "a race"), ("the quiz night", "a competition")), opposite_past="lost"),
    Verb("accept", "accepted", "accepted", "take up", "took up", "taken up",
         _things(("the job offer", "an offer"), ("the invitation", "an offer"), ("the new contract", "a document"),
                 ("the proposal", "a plan")), opposite_past="rejected"),
    Verb("paint", "painted", "painted", "decorate", "decorated", "decorated",
         _things(("the kitchen walls", "some walls"), ("a portrait", "a picture"), ("the wooden boat", "a boat"),
                 ("the garden shed", "a building"))),
    Verb("call", "called", "called", "phone", "phoned", "phoned",
         _things(("the plumber", "someone"), ("her landlord", "someone"), ("the new doctor", "a doctor"),
                 ("his old teacher", "a teacher")), takes_people=True),
    Verb("help", "helped", "helped", "assist", "assisted", "assisted",
         _things(("the new nurse", "a nurse"), ("a lost tourist", "someone"), ("the young farmer", "a farmer"),
                 ("their neighbour", "someone")), takes_people=True),
    Verb("cook", "cooked", "cooked", "prepare", "prepared", "prepared",
         _things(("a spicy stew", "a meal"), ("dinner for ten", "a meal"), ("the family recipe", "a dish"),
                 ("fresh pasta", "some food"))),
    Verb("sell", "sold", "sold", "trade", "traded", "traded",
         _things(("the family car", "a vehicle"), ("an antique clock", "an antique"), ("the old piano", "an instrument"),
                 ("a small flat", "a property")), opposite_past="bought"),
)
SINGULAR = ("Anna", "Tom", "the mechanic", "our teacher", "Dr. Patel", "the baker", "my grandfather", "the captain",
            "Mrs. Okoro", "the new intern", "her brother", "the mayor", "Lucia", "the old fisherman")
PLURAL = ("my parents", "the twins", "our neighbours", "the students", "the volunteers", "my cousins")
PEOPLE = SINGULAR + PLURAL
PLACES = ("at the market", "in the old town", "near the station", "by the river", "at the community centre",
          "in the village", "at the harbour", "behind the school", "in the city centre", "at the farm")
TIMES = ("on Monday", "on Friday", "last week", "in the morning", "after lunch", "in March", "two days ago",
         "at the weekend", "late at night", "in the summer")
REASONS = ("because it was cheap", "to surprise a friend", "for the first time", "despite the rain", "without any help",
           "before the guests arrived", "as a favour", "in a hurry")
CONTEXT = ("It was a busy day.", "Nobody expected it.", "The weather was cold.", "It took most of the afternoon.",
           "Everyone was talking about it.", "It was the first time in years.", "The local paper reported it.",
           "Few people noticed.")


@dataclass(frozen=True)
class Event:
    """Who did what to what, where and when (place/time/reason "" when the event does not say)."""

    subject: str
    verb: Verb
    thing: str
    place: str = ""
    time: str = ""
    reason: str = ""
    negated: bool = False
    opposite: bool = False  # the verb's opposite happened instead

    @property
    def plural(self) -> bool:
        return self.subject in PLURAL


def random_event(rng: np.random.Generator, *, place: float = 0.6, time: float = 0.6) -> Event:
    """An event with a place and a time each present with the given probabilities."""
    verb = VERBS[int(rng.integers(len(VERBS)))]
    return Event(subject=pick(rng, PEOPLE), verb=verb, thing=pick(rng, tuple(t.phrase for t in verb.things)),
                 place=pick(rng, PLACES) if rng.random() < place else "", time=pick(rng, TIMES) if rng.random() < time else "")


def _thing(event: Event) -> Thing:
    return next(thing for thing in event.verb.things if thing.phrase == event.thing or thing.general == event.thing)


def _verb_past(event: Event, synonym: bool) -> str:
    verb = event.verb
    if event.opposite:
        assert verb.opposite_past is not None
        return verb.opposite_past
    if event.negated:
        return f"did not {verb.synonym_base if synonym else verb.base}"
    return verb.synonym_past if synonym else verb.past


def _participle(event: Event, synonym: bool) -> str:
    verb = event.verb
    if event.opposite:  # only verbs whose opposite has a regular participle are reversed in the passive
        assert verb.opposite_past is not None
        return {"broke": "broken", "lost": "lost"}.get(verb.opposite_past, verb.opposite_past)
    return verb.synonym_participle if synonym else verb.participle


def render(rng: np.random.Generator, event: Event, *, passive: bool | None = None, agent: bool = True) -> str:
    """One sentence stating ``event`` in a random meaning-preserving surface form (or the given voice).

    ``agent=False`` writes the passive without "by SUBJECT" (it then no longer says who did it)."""
    synonym = bool(rng.random() < 0.5)
    if passive is None:
        passive = bool(rng.random() < 0.35)
    tail = " ".join(part for part in (event.place, event.time, event.reason) if part)
    if passive:
        be = "were" if event.thing.endswith("s") and not event.thing.endswith("ss") else "was"
        verb = f"{be} not {_participle(event, synonym)}" if event.negated else f"{be} {_participle(event, synonym)}"
        by = f" by {event.subject}" if agent else ""
        clause = f"{event.thing} {verb}{by}"
    else:
        clause = f"{event.subject} {_verb_past(event, synonym)} {event.thing}"
    if event.time and not event.reason and rng.random() < 0.3:  # the time fronted
        rest = " ".join(part for part in (event.place,) if part)
        return f"{capitalise(event.time)}, {clause}{' ' + rest if rest else ''}."
    return capitalise(f"{clause}{' ' + tail if tail else ''}") + "."


# The edits. Each returns a new event; the tasks decide what an edit means for their label.

def with_detail(event: Event, name: str, value: str) -> Event:
    """``event`` with its place, time or reason (``name``) set to ``value`` ("" drops it)."""
    changes: dict[str, Any] = {name: value}  # one str field chosen at run time: replace() cannot check it statically
    return replace(event, **changes)


def drop_detail(rng: np.random.Generator, event: Event) -> Event | None:
    """Forget the place or the time (what is left still follows from the event); None when there is neither."""
    options = [name for name in ("place", "time") if getattr(event, name)]
    return with_detail(event, pick(rng, options), "") if options else None


def generalise(rng: np.random.Generator, event: Event) -> Event:
    """Say less about what or who: the object's general phrase, or "someone" as the subject."""
    if rng.random() < 0.6:
        return replace(event, thing=_thing(event).general)
    return replace(event, subject="someone")


def add_detail(rng: np.random.Generator, event: Event) -> Event:
    """Add a place, a time or a reason the event did not state (it may or may not be true)."""
    missing = [name for name in ("place", "time") if not getattr(event, name)] + ["reason"]
    name = pick(rng, missing)
    pool = {"place": PLACES, "time": TIMES, "reason": REASONS}[name]
    return with_detail(event, name, pick(rng, pool))


def swap_subject(rng: np.random.Generator, event: Event) -> Event:
    """Someone else did it."""
    return replace(event, subject=pick(rng, tuple(person for person in PEOPLE if person != event.subject)))


def swap_thing(rng: np.random.Generator, event: Event) -> Event:
    """It was done to something else."""
    others = tuple(thing.phrase for thing in event.verb.things if thing.phrase != event.thing)
    return replace(event, thing=pick(rng, others))


def swap_time(rng: np.random.Generator, event: Event) -> Event:
    """It happened at another time (a time is added if there was none)."""
    return replace(event, time=pick(rng, tuple(time for time in TIMES if time != event.time)))


def contradict(rng: np.random.Generator, event: Event) -> Event:
    """It did not happen, or its opposite did."""
    if event.verb.opposite_past is not None and event.verb.opposite_past in ("sold", "bought", "lost", "closed",
                                                                             "rejected", "broke") and rng.random() < 0.4:
        return replace(event, opposite=True)
    return replace(event, negated=True)


def context_sentence(rng: np.random.Generator) -> str:
    """A sentence that adds colour but no fact about the event (RTE-like premises are longer than hypotheses)."""
    return pick(rng, CONTEXT)
