"""Two sentiment tasks with one label space and one style: product reviews and restaurant reviews (a confusable pair).

Both are written by templates. Most reviews mix praise and complaint; the label follows the main clause and the
verdict, which is often negated ("Not bad at all", "I can't recommend it"), so a bag-of-topics embedding alone does
not separate the classes. The verdicts, minor remarks (delivery, price, packaging) and phrasing are shared by the two
domains, so a router must tell them apart by gadgets vs food alone.
"""

from __future__ import annotations

import numpy as np

from mergeflow.data.text_task_spec import TextSplitMaker, TextTaskSpec, generated_text_split
from mergeflow.data.text_tasks.grammar import Grammar, at_most_words, expand, tidy

SENTIMENTS = ("negative", "positive")
MAX_WORDS = 20

SHARED: dict[str, tuple[str, ...]] = {
    "person": ("son", "wife", "husband", "dad", "mum", "sister", "flatmate", "grandmother", "boss", "best friend"),
    "pos_verdict": (
        "Highly recommended.", "Five stars from me.", "Worth every penny.", "No complaints at all.", "I can't fault it.",
        "Not bad at all, honestly.", "I was not disappointed.", "Would recommend to anyone.", "Ten out of ten.",
        "Absolutely loved it.", "Can't say a bad word about it.", "Pleasantly surprised.",
    ),
    "neg_verdict": (
        "Would not recommend.", "One star, and that's generous.", "Total waste of money.", "Not worth the money.",
        "I can't recommend it.", "Very disappointed.", "Avoid.", "Never again.", "Zero stars if I could.",
        "Not what I hoped for at all.", "Nothing good to say, sadly.", "Such a letdown.",
    ),
    "shared_minor_bad": ("delivery took a bit longer than promised", "the price is a little high",
                         "the packaging was over the top"),
    "shared_minor_good": ("delivery was quick", "the price seemed fair", "the packaging was lovely"),
}

POSITIVE_TEMPLATES = (
    "{minor_bad^}, but {major_good}. {pos_verdict}",
    "{major_good^}. {pos_verdict}",
    "{gift} {major_good^}, and {major_good}.",
    "I expected to hate {item}, but {major_good}.",
    "{major_good^}, though {minor_bad}. {pos_verdict}",
    "{opener} {major_good}. {pos_verdict}",
    "Not sure about {item} at first, but {major_good}.",
)
NEGATIVE_TEMPLATES = (
    "{minor_good^}, but {major_bad}. {neg_verdict}",
    "{major_bad^}. {neg_verdict}",
    "{gift} {major_bad^}, and {major_bad}.",
    "I wanted to love {item}, but {major_bad}.",
    "{major_bad^}, though {minor_good}. {neg_verdict}",
    "{opener} {major_bad}. {neg_verdict}",
    "Had high hopes for {item}, but {major_bad}.",
)

PRODUCT_GRAMMAR: Grammar = {
    **SHARED,
    "product": ("wireless earbuds", "blender", "phone case", "laptop stand", "electric kettle", "hiking backpack",
                "desk lamp", "robot vacuum", "mechanical keyboard", "air fryer", "fitness tracker", "speaker",
                "office chair", "water bottle", "hair dryer", "phone charger", "coffee grinder", "tablet", "rain jacket",
                "toaster", "e-reader", "webcam", "toothbrush", "power bank", "monitor", "gaming mouse", "yoga mat",
                "suitcase", "smartwatch", "printer", "baby monitor", "cordless drill", "microwave", "tripod",
                "{appliance}", "{appliance}", "{appliance}"),
    # Kitchen appliances bring food words into product reviews, as takeaways bring packaging into restaurant ones.
    "appliance": ("pizza oven", "espresso machine", "rice cooker", "waffle maker", "slow cooker", "ice cream maker",
                  "bread maker", "juicer"),
    "food": ("pizza", "coffee", "rice", "bread", "soup", "pasta", "curry", "ice cream"),
    "part": ("battery", "lid", "strap", "screen", "zip", "handle", "cable", "button", "hinge", "motor", "charging port",
             "power switch"),
    "item": ("this {product}", "the {product}", "my new {product}", "the {brand} {product}"),
    "brand": ("Zentro", "Kalo", "Ambry", "Voltix", "Nordby", "Pexa"),
    "gift": ("Got {item} for my {person}.", "Bought {item} last month.", "Ordered {item} on sale."),
    "opener": ("Quick review of {item}:", "Three weeks with {item}:", "Update on {item}:", "My verdict on {item}:"),
    "major_good": (
        "the battery lasts all week", "it charged in under an hour", "setup took two minutes",
        "it feels solid and well made", "the sound is crisp and clear", "it is whisper quiet",
        "it does exactly what it promises", "the {part} works flawlessly", "it survived a drop onto concrete",
        "it is still going strong after a year", "the app pairs instantly", "it heats up in seconds",
        "the picture is sharp and bright", "it fits in my bag with room to spare", "the {part} is really sturdy",
        "it makes the best {food} I've had at home", "the {food} comes out perfect every time",
    ),
    "major_bad": (
        "the battery dies within an hour", "it stopped working after a week", "the {part} snapped on day two",
        "it overheats after ten minutes", "the app keeps disconnecting", "it rattles and buzzes constantly",
        "it leaks everywhere", "it arrived dead and never turned on", "the {part} fell off",
        "it is far too loud to use at night", "the screen flickers nonstop", "it shut down in the middle of a call",
        "the {part} cracked the first time I used it", "it smells like burning plastic",
        "the {food} comes out burnt every time", "the {food} tasted of plastic",
    ),
    "minor_bad": ("{shared_minor_bad}", "the box was a little dented", "the manual is hard to read",
                  "the cable is a bit short", "the colour is slightly darker than in the photos",
                  "it is a bit heavier than I expected"),
    "minor_good": ("{shared_minor_good}", "it looks stylish", "the colour is nice", "the box it came in was sturdy",
                   "customer service replied quickly", "it looks great on the shelf"),
    "pos_verdict": (*SHARED["pos_verdict"], "I'd buy it again.", "Buying a second one for my {person}."),
    "neg_verdict": (*SHARED["neg_verdict"], "I'm sending it back.", "Never buying this brand again."),
}

RESTAURANT_GRAMMAR: Grammar = {
    **SHARED,
    "dish": ("ramen", "pizza", "burger", "pasta", "curry", "soup", "salmon", "steak", "omelette", "paella", "salad",
             "falafel wrap", "risotto", "cheesecake", "chowder", "lasagne", "pad thai", "roast chicken"),
    "item": ("this little bistro", "the new ramen bar", "this pizzeria", "the hotel restaurant", "this café",
             "the steakhouse downtown", "this taco truck", "the sushi place", "our local diner", "this vegan spot",
             "the curry house", "the seafood grill", "this bakery", "the rooftop bar", "their takeaway"),
    "gift": ("Took my {person} to {item}.", "Tried {item} last night.", "Ordered from {item} again."),
    "opener": ("Dinner at {item}:", "Lunch at {item} today:", "Date night at {item}:", "Ordered from {item}:"),
    "major_good": (
        "the {dish} was cooked perfectly", "the staff were warm and attentive", "portions were huge",
        "the {dish} tasted like home", "every dish came out hot and fresh", "the waiter remembered our names",
        "the bread was still warm from the oven", "the {dish} was the best I've had in years",
        "the chef came out to check on us", "they handled my allergy with real care", "the {dish} was packed with flavour",
        "the {dish} arrived piping hot in sturdy boxes", "the ordering app was quick and easy",
    ),
    "major_bad": (
        "the {dish} was cold and bland", "we waited over an hour for our food", "the {dish} tasted off and made me sick",
        "the waiter ignored us all evening", "there was a hair in my {dish}", "the bill had drinks we never ordered",
        "the {dish} was burnt to a crisp", "the tables were sticky and the floor was filthy",
        "they lost our booking and just shrugged", "the {dish} was raw in the middle",
        "the manager was rude when we complained", "the {dish} arrived soggy in a flimsy box",
        "the card machine was broken and the app kept crashing",
    ),
    "minor_bad": ("{shared_minor_bad}", "it was a bit noisy", "parking was a pain", "the menu is short",
                  "the chairs are a little hard", "we had to wait ten minutes for a table"),
    "minor_good": ("{shared_minor_good}", "the decor is charming", "the view is nice", "the menu looks interesting",
                   "the cocktails were fine", "the music was pleasant"),
    "pos_verdict": (*SHARED["pos_verdict"], "We'll definitely be back.", "Booking again for my {person}'s birthday."),
    "neg_verdict": (*SHARED["neg_verdict"], "We won't be back.", "Never eating here again."),
}


def _review_maker(task: str, grammar: Grammar) -> TextSplitMaker:
    def draw(rng: np.random.Generator, label: int) -> str:
        templates = POSITIVE_TEMPLATES if label == 1 else NEGATIVE_TEMPLATES
        return at_most_words(lambda: tidy(expand(rng, templates[int(rng.integers(len(templates)))], grammar)), MAX_WORDS)

    def make_split(split: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
        return generated_text_split(task, split, n, seed, len(SENTIMENTS), draw)

    make_split.__doc__ = f"Balanced {task} split: templated reviews, label 1 = positive."
    return make_split


PRODUCT_REVIEWS = TextTaskSpec(
    name="product_reviews",
    class_names=SENTIMENTS,
    origin="generated",
    source="generated by templates: product reviews mixing praise and complaints, verdict often negated",
    make_split=_review_maker("product_reviews", PRODUCT_GRAMMAR),
)
RESTAURANT_REVIEWS = TextTaskSpec(
    name="restaurant_reviews",
    class_names=SENTIMENTS,
    origin="generated",
    source="generated by templates: restaurant reviews in the product reviews' style, sharing their verdicts",
    make_split=_review_maker("restaurant_reviews", RESTAURANT_GRAMMAR),
)
