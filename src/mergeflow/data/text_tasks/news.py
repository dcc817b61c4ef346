"""Topic of a news headline: sports, politics, science or business, written by templates.

Half of the headlines borrow another topic's vocabulary (a minister at a match, a football club's shares, a
study of athletes, a launch delayed by a budget vote), and most end in an aside drawn from any topic ("as interest
rates rise", "amid housing row"), while the headline's own event decides the label: the topic words that dominate a
pretrained sentence embedding are often misleading.
"""

from __future__ import annotations

import numpy as np

from mergeflow.data.text_task_spec import TextTaskSpec, generated_text_split
from mergeflow.data.text_tasks.grammar import Grammar, expand, tidy

TOPICS = ("sports", "politics", "science", "business")
ASIDE_SHARE = 0.7

GRAMMAR: Grammar = {
    "team": ("Rovers", "City", "United", "the Falcons", "the Wolves", "Athletic", "the Sharks", "Rangers", "the Comets",
             "Wanderers", "the Tigers", "Albion"),
    "surname": ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Brennan", "Kowalski", "Alvarez", "Nakamura", "Haddad",
                "Petrova", "Mensah", "O'Neill", "Castillo", "Varga"),
    "score": ("2-1", "3-0", "1-0", "4-2", "2-2", "5-1", "3-1"),
    "competition": ("the cup", "the league", "the world championships", "the open", "the grand prix", "the derby"),
    "event": ("100 metres", "marathon", "high jump", "200m freestyle", "pole vault", "sprint"),
    "sport": ("football", "tennis", "rugby", "cycling", "cricket", "basketball", "swimming"),
    "policy": ("housing", "pension", "immigration", "tax", "healthcare", "school funding", "climate", "defence"),
    "chamber": ("Parliament", "The Senate", "Congress", "The assembly", "Lawmakers", "The cabinet"),
    "region": ("the north", "the capital", "coastal districts", "three provinces", "the border region", "the south",
               "rural counties", "the islands"),
    "company": ("Norvex", "Halden Group", "Brightwell", "Kestrel Foods", "Orbis Motors", "Tallis Bank", "Quanta Retail",
                "Meridian Air", "Solace Pharma", "Granite Telecom"),
    "obj": ("a rocky planet", "a comet", "an icy moon", "a black hole", "a brown dwarf", "a cloud of water vapour"),
    "finding": ("poor sleep", "coffee", "air pollution", "screen time", "gut bacteria", "a common virus", "daily walks",
                "loneliness", "noise", "a gene variant"),
    "effect": ("memory loss", "heart disease", "longer life", "faster healing", "allergies", "ageing", "dementia",
               "asthma", "stronger bones", "obesity"),
    "animal": ("the axolotl", "the giant squid", "a deep-sea worm", "the honeybee", "the snow leopard", "a cave fish",
               "the octopus", "the naked mole rat", "the tardigrade", "a coral"),
    "scientists": ("Astronomers", "Researchers", "Scientists", "A university team", "Biologists", "Geologists",
                   "Chemists", "An international team"),
    "star": ("a distant star", "a nearby red dwarf", "a young sun", "twin stars", "the closest star", "a dying star"),
    "place": ("Patagonia", "the Gobi desert", "Antarctica", "a Welsh quarry", "the Arctic", "a Kenyan valley"),
    "lineage": ("early birds", "giant sharks", "the first mammals", "flowering plants", "ancient crocodiles", "frogs"),
    "constant": ("the neutron's lifetime", "the proton's size", "the speed of gravity", "the electron's mass",
                 "the Hubble constant"),
    "organ": ("its heart", "its eyes", "its spine", "lost limbs", "its brain"),
    "mission": ("the lunar lander", "a Mars probe", "the new space telescope", "a weather satellite", "the comet mission"),
    "number": ("200", "1,500", "3,000", "400", "12,000", "850"),
    "votes": ("two", "five", "nine", "twelve", "forty"),
    "ministry": ("health", "finance", "foreign", "education", "transport", "justice"),
    "fine": ("2", "40", "120", "3.5", "75"),
    "pct": ("4.5%", "5%", "3.25%", "6%", "2.75%"),
    "sports_plain": (
        "{team} beat {team} {score} to reach the final", "{surname} breaks {event} world record",
        "{team} sack manager after fifth straight defeat", "Injury rules {surname} out of {competition}",
        "{surname} wins {competition} in a thrilling finish", "{team} hold {team} to a {score} draw",
        "{surname} retires from {sport} at 34", "Late goal sends {team} top of {competition}",
    ),
    "sports_cross": (
        "Prime minister watches {team} beat {team} {score}", "{team} break transfer record to sign {surname}",
        "{surname} donates {competition} prize money, then wins again", "Tax row fails to stop {surname} winning the {event}",
        "{team} fans celebrate as stadium vote is forgotten in {score} win",
    ),
    "politics_plain": (
        "{chamber} passes {policy} bill after late-night vote", "Prime minister faces revolt over {policy} plan",
        "Opposition leader {surname} calls for inquiry into {policy}", "Voters head to the polls in {region}",
        "Minister {surname} resigns over {policy} row", "{chamber} rejects {policy} reform by {votes} votes",
        "{surname} named new {ministry} minister in reshuffle", "Protesters march in {region} against {policy} cuts",
        "Coalition talks collapse over {policy}", "Election result in {region} too close to call",
    ),
    "politics_cross": (
        "{chamber} votes to fund {mission} despite cuts", "Ministers debate ban on {sport} betting adverts",
        "{surname} quits {sport} to run for mayor", "{chamber} grills {company} bosses over {policy}",
        "Government blocks {company} takeover on security grounds",
    ),
    "science_plain": (
        "{scientists} spot {obj} orbiting {star}", "New study links {finding} to {effect}",
        "{scientists} sequence the genome of {animal}", "Space agency delays launch of {mission}",
        "Fossil find in {place} rewrites the story of {lineage}", "Physicists measure {constant} more precisely than ever",
        "Telescope captures {obj} in unprecedented detail", "{scientists} find {animal} can regrow {organ}",
        "{scientists} discover new species of {lineage} in {place}", "{finding} may slow {effect}, {scientists} say",
    ),
    "science_cross": (
        "Study finds {sport} players sleep less than expected", "{company} lab reports {finding} linked to {effect}",
        "{scientists} use {sport} crowds to study how epidemics spread", "Budget row fails to stop {mission} reaching orbit",
        "Economists and biologists model {animal} decline", "{scientists} track {sport} injuries to study {effect}",
    ),
    "business_plain": (
        "{company} shares jump after profits beat forecasts", "{company} to cut {number} jobs amid slowdown",
        "Central bank raises interest rates to {pct}", "{company} agrees takeover of {company}",
        "Inflation falls to {pct} as fuel prices ease", "{company} posts record quarterly loss",
        "{company} chief executive steps down after profit warning", "Markets slide as {company} misses targets",
    ),
    "business_cross": (
        "Sportswear maker {company} profits fall after a poor {sport} season", "{team} owners sell club to {company}",
        "{company} shares soar on {mission} contract", "{company} pays {fine} million fine in {policy} case",
        "{company} profits rise as {competition} drives ticket sales",
    ),
    "tag": ("", "", "", "", "Breaking: ", "Live: ", "Analysis: ", "Exclusive: ", "Update: ", "Explained: "),
    "sports": ("{tag}{sports_plain}", "{tag}{sports_cross}"),
    "politics": ("{tag}{politics_plain}", "{tag}{politics_cross}"),
    "science": ("{tag}{science_plain}", "{tag}{science_cross}"),
    "business": ("{tag}{business_plain}", "{tag}{business_cross}"),
    # Trailing asides in another topic's words; the headline's own event still decides its topic.
    "aside": ("as {company} shares slide", "amid {policy} row", "days before the {competition}",
              "as parliament debates {policy}", "while scientists watch closely", "as inflation bites",
              "as {team} fans look on", "ahead of the {region} vote", "as interest rates rise",
              "after a new study", "on budget day", "as {mission} nears launch"),
}


def make_news_topics(split: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Balanced split of templated headlines (no final full stop, as headlines are written)."""

    def draw(rng: np.random.Generator, label: int) -> str:
        headline = expand(rng, "{" + TOPICS[label] + "}", GRAMMAR)
        if rng.random() < ASIDE_SHARE:
            headline = f"{headline} {expand(rng, '{aside}', GRAMMAR)}"
        return tidy(headline)

    return generated_text_split("news_topics", split, n, seed, len(TOPICS), draw)


NEWS_TOPICS = TextTaskSpec(
    name="news_topics",
    class_names=TOPICS,
    origin="generated",
    source="generated by templates: news headlines with invented teams, people and companies; half cross topics",
    make_split=make_news_topics,
)
