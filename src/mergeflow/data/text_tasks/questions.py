"""What kind of answer a trivia question asks for (a person, a place, a time or a number), written by templates.

Every class asks about the same pool of landmarks, inventions and events, so the subject of a question says
nothing about its class; only the question frame does. Many frames avoid the obvious wh-word ("What city...",
"Name the year...", "Tell me who..."), and some questions follow a lead-in story full of people, places, dates and
numbers ("my uncle from Lisbon asked me in 1999, so ..."), so the class is not one token away.
"""

from __future__ import annotations

import numpy as np

from mergeflow.data.text_task_spec import TextTaskSpec, generated_text_split
from mergeflow.data.text_tasks.grammar import Grammar, at_most_words, capitalise, expand, tidy

ANSWER_TYPES = ("person", "place", "time", "number")
MAX_WORDS = 20

GRAMMAR: Grammar = {
    "landmark": ("the Eiffel Tower", "the Golden Gate Bridge", "the Sydney Opera House", "the Great Wall",
                 "the Taj Mahal", "the Colosseum", "Big Ben", "the Panama Canal", "the Hoover Dam", "the Louvre pyramid",
                 "the Leaning Tower of Pisa", "Machu Picchu", "the Brooklyn Bridge", "Stonehenge", "the Statue of Liberty",
                 "the Empire State Building", "Angkor Wat", "the Parthenon", "Notre-Dame", "the Burj Khalifa",
                 "the Tower of London", "Chichen Itza", "the Forbidden City", "the Suez Canal"),
    "invention": ("the telephone", "the printing press", "penicillin", "the light bulb", "the steam engine",
                  "the World Wide Web", "the bicycle", "the vaccine for smallpox", "the television", "the jet engine",
                  "the microscope", "the periodic table", "radio", "the ballpoint pen", "the compass", "the typewriter",
                  "the airplane", "the camera", "the refrigerator", "the sewing machine", "the x-ray machine",
                  "the electric battery", "the zip", "the hot air balloon"),
    "event": ("the first Olympic Games", "the moon landing", "the French Revolution", "the first marathon",
              "the fall of the Berlin Wall", "the first transatlantic flight", "the gold rush",
              "the first world cup", "the signing of the Magna Carta", "the great fire of London",
              "the first ascent of Everest", "the Boston Tea Party", "the first Tour de France", "the Battle of Hastings",
              "the first human spaceflight", "the opening of the first railway", "the Apollo 13 mission",
              "the discovery of Tutankhamun's tomb"),
    "thing": ("{landmark}", "{invention}", "{event}"),
    "built": ("{landmark}", "{invention}"),
    "lead": ("", "Quick question: ", "Trivia time: ", "For my quiz, ", "Pub quiz: ", "Homework help: ",
             "{story}, so ", "{story}, so ", "{story}, so ", "{story}, so "),
    # Lead-in stories that mention people, places, dates and numbers whatever the question asks for.
    "story": ("my uncle from Lisbon asked me in 1999", "three of us argued about it in Rome last May",
              "my teacher mentioned it twice in class", "we drove 500 miles to see it in June",
              "a guide in Paris told us about it", "my gran visited it in 1962 with two friends",
              "I read about it at the library in Boston", "twelve people on my tour disagreed"),
    "person": (
        "{lead}who designed {landmark}?", "{lead}who invented {invention}?", "{lead}which engineer built {landmark}?",
        "{lead}name the scientist behind {invention}.", "{lead}whose idea was {thing}?",
        "{lead}who led {event}?", "{lead}tell me who is credited with {invention}.",
        "{lead}what was the name of the architect of {landmark}?", "{lead}which king ordered {landmark}?",
        "{lead}who won {event}?",
    ),
    "place": (
        "{lead}where is {landmark}?", "{lead}in which city was {invention} first made?",
        "{lead}what country did {event} take place in?", "{lead}name the town where {invention} was invented.",
        "{lead}where did {event} start?", "{lead}what city is {landmark} in?",
        "{lead}which continent is home to {landmark}?", "{lead}tell me where {event} happened.",
        "{lead}on which river was {landmark} built?", "{lead}what was the birthplace of {invention}?",
    ),
    "time": (
        "{lead}when was {built} completed?", "{lead}in what year did {event} happen?",
        "{lead}what century was {invention} invented in?", "{lead}name the year {event} took place.",
        "{lead}when did {event} end?", "{lead}what decade saw the opening of {landmark}?",
        "{lead}tell me when {invention} first appeared.", "{lead}how long ago was {built} created?",
        "{lead}what was the date of {event}?", "{lead}in which era was {landmark} built?",
    ),
    "number": (
        "{lead}how many people visit {landmark} each year?", "{lead}how tall is {landmark}?",
        "{lead}how much did {built} cost?", "{lead}what number of workers built {landmark}?",
        "{lead}how many people took part in {event}?", "{lead}tell me how many {invention} units were sold at first.",
        "{lead}what was the population of the city during {event}?", "{lead}how many steps lead to the top of {landmark}?",
        "{lead}how far did {event} stretch in kilometres?", "{lead}what is the total weight of {landmark} in tonnes?",
    ),
}


def make_question_types(split: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Balanced split of templated trivia questions; label = the answer type."""

    def draw(rng: np.random.Generator, label: int) -> str:
        return at_most_words(lambda: capitalise(tidy(expand(rng, "{" + ANSWER_TYPES[label] + "}", GRAMMAR))), MAX_WORDS)

    return generated_text_split("question_types", split, n, seed, len(ANSWER_TYPES), draw)


QUESTION_TYPES = TextTaskSpec(
    name="question_types",
    class_names=ANSWER_TYPES,
    origin="generated",
    source="generated by templates: trivia questions over one shared pool of landmarks, inventions and events",
    make_split=make_question_types,
)
