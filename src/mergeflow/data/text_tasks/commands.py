"""Which smart-home function a spoken command is for: lights, music, heating, timers or the shopping list.

Written by templates. The commands share their verbs and frames across classes ("turn it up", "set ... to ...",
"can you ... in the kitchen", "put on ..."), some name another device's things ("play that song about milk",
"wake me up at seven with jazz"), and most start with a situation that names other devices ("the radio is on and
it's dark in here, so ..."). The class hangs on what the command itself asks a device to do, not on the shape or
the topic words of the sentence.
"""

from __future__ import annotations

import numpy as np

from mergeflow.data.text_task_spec import TextTaskSpec, generated_text_split
from mergeflow.data.text_tasks.grammar import Grammar, at_most_words, capitalise, expand, pick, tidy

DEVICES = ("lights", "music", "heating", "timer", "shopping_list")

GRAMMAR: Grammar = {
    "please": ("", "", "please ", "hey, ", "can you ", "could you ", "okay, "),
    "thanks": ("", "", "", " thanks", " now", " right away"),
    "room": ("kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "kids' room", "garage"),
    "colour": ("blue", "warm white", "red", "green", "soft yellow", "purple"),
    "genre": ("jazz", "some rock", "classical music", "lo-fi beats", "the radio", "my workout playlist",
              "something relaxing", "the new album", "a podcast"),
    "temp": ("eighteen", "nineteen", "twenty", "twenty one", "twenty two", "sixteen"),
    "duration": ("five minutes", "ten minutes", "half an hour", "an hour", "twenty minutes", "ninety seconds"),
    "clock": ("six thirty", "seven", "half past eight", "quarter to six", "noon", "nine fifteen"),
    "chore": ("take the bread out", "call mum", "check the oven", "move the car", "take my pills"),
    "grocery": ("milk", "eggs", "bananas", "dish soap", "coffee beans", "bread", "olive oil", "batteries", "rice",
                "toilet paper", "cheese", "tomatoes"),
    "lights": (
        "{please}turn the {room} lights {onoff}{thanks}", "{please}dim the lamp in the {room}{thanks}",
        "{please}make it brighter in the {room}{thanks}", "{please}set the {room} lights to {colour}{thanks}",
        "{please}turn it up, the {room} is too dark{thanks}", "{please}put the lamps on in the {room}{thanks}",
        "{please}switch off every light except the {room}{thanks}", "it's too bright in the {room}, turn it down{thanks}",
        "{please}turn the {room} lights off in {duration}{thanks}", "{please}flash the lights when the music stops{thanks}",
        "{please}set the lights to {colour} for the party at {clock}{thanks}",
    ),
    "onoff": ("on", "off", "down", "up"),
    "music": (
        "{please}play {genre} in the {room}{thanks}", "{please}turn the volume up{thanks}", "{please}skip this song{thanks}",
        "{please}put on {genre}{thanks}", "it's too loud in the {room}, turn it down{thanks}",
        "{please}turn the music {onoff} in the {room}{thanks}", "{please}set the speaker to {genre}{thanks}",
        "{please}turn it up, I love this track{thanks}", "{please}play the {clock} news in the {room}{thanks}",
        "{please}play {genre} until {clock}{thanks}", "{please}play that song about {grocery}{thanks}",
    ),
    "heating": (
        "{please}set the heating to {temp} degrees{thanks}", "{please}turn the heat {onoff} in the {room}{thanks}",
        "{please}make it warmer in the {room}{thanks}", "{please}switch the radiator off in the {room}{thanks}",
        "it's freezing in the {room}, turn it up{thanks}", "{please}put the heating on{thanks}",
        "{please}set the {room} to {temp} degrees{thanks}", "it's too hot in the {room}, turn it down{thanks}",
        "{please}turn the heating off in {duration}{thanks}", "{please}warm the {room} up by {clock}{thanks}",
        "{please}keep the {room} cool while the music plays{thanks}",
    ),
    "timer": (
        "{please}set a timer for {duration}{thanks}", "{please}wake me up at {clock}{thanks}",
        "{please}remind me in {duration} to {chore}{thanks}", "{please}cancel my {clock} alarm{thanks}",
        "{please}set an alarm for {clock} in the {room}{thanks}", "{please}put on a {duration} countdown{thanks}",
        "{please}turn the alarm off{thanks}", "{please}add {duration} to the {room} timer{thanks}",
        "{please}wake me up at {clock} with {genre}{thanks}", "{please}remind me in {duration} to buy {grocery}{thanks}",
        "{please}set an alarm for when the heating comes on{thanks}",
    ),
    "shopping_list": (
        "{please}add {grocery} to my shopping list{thanks}", "{please}put {grocery} on the list{thanks}",
        "we're out of {grocery}, add it to the list{thanks}", "{please}remove {grocery} from the grocery list{thanks}",
        "{please}put {grocery} and {grocery} on the shopping list{thanks}", "{please}set a reminder to buy {grocery}{thanks}",
        "{please}turn {grocery} into two packs on my list{thanks}", "{please}add {grocery} for the {room}{thanks}",
        "{please}add {grocery} and light bulbs to the list{thanks}", "{please}put a new speaker on my shopping list{thanks}",
        "{please}add a small heater and {grocery} to the list{thanks}",
    ),
}


# Situations that mention other devices before the command; the command itself decides the class.
SITUATIONS = ("the radio is on and it's dark in here, so", "I'm cooking with the heating on, so",
              "while the lights are low,", "before the timer goes off,", "now that the song is over,",
              "since it's cold tonight,", "the kids are asleep, so", "we're back from the shops, so",
              "I'm off to bed soon, so", "the alarm woke me early, so", "guests arrive at seven, so",
              "the speaker is quiet and the fridge is empty, so", "the timer rang and the heater clicked off, so")
SITUATION_SHARE = 0.7
MAX_WORDS = 20


def make_home_commands(split: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Balanced split of templated smart-home commands; label = the device class."""

    def draw(rng: np.random.Generator, label: int) -> str:
        def write() -> str:
            command = expand(rng, "{" + DEVICES[label] + "}", GRAMMAR)
            if rng.random() < SITUATION_SHARE:
                command = f"{pick(rng, SITUATIONS)} {command}"
            return capitalise(tidy(command))

        return at_most_words(write, MAX_WORDS)

    return generated_text_split("home_commands", split, n, seed, len(DEVICES), draw)


HOME_COMMANDS = TextTaskSpec(
    name="home_commands",
    class_names=DEVICES,
    origin="generated",
    source="generated by templates: smart-home voice commands whose verbs and frames are shared across devices",
    make_split=make_home_commands,
)
