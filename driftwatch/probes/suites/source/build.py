"""Build the ``standard`` and ``quick`` suites from the written sources and seeded generators.

Run from anywhere; it rewrites ``../standard/`` and ``../quick/`` byte for byte the same way
every time (``tests/test_builtin_suites.py`` checks that the checked-in files are its output)::

    python driftwatch/probes/suites/source/build.py            # write
    python driftwatch/probes/suites/source/build.py --check    # exit 1 if anything differs

Written items (facts, misconceptions, commonsense, requests, texts) live beside this script as
JSONL sources and are only reformatted (options shuffled with a fixed seed). Items that can be
generated — arithmetic, word problems, logic, passages, counterfactual contexts, IFEval-style
constraint combinations, JSON schemas, tool calls, multi-turn constraints, citations — come from
the generators below, each seeded by its capability id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITES = HERE.parent
Item = dict[str, Any]

# ------------------------------------------------------------------------------ helpers


def _rng(name: str) -> random.Random:
    """A generator seeded by name, independent of every other generator's draws."""
    return random.Random(int(hashlib.sha256(name.encode()).hexdigest()[:16], 16))


def _read(name: str) -> list[Item]:
    rows = (HERE / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(r) for r in rows if r.strip()]


def _qa(question: str, labels: tuple[str, str] = ("Question", "Answer")) -> str:
    return f"{labels[0]}: {question}\n{labels[1]}:"


def _choice(
    rng: random.Random, item_id: str, cap: str, prompt: str, answer: str, wrong: Iterable[str]
) -> Item:
    options = [answer, *wrong]
    rng.shuffle(options)
    return {
        "id": item_id,
        "capability": cap,
        "kind": "choice",
        "prompt": prompt,
        "choices": [" " + o for o in options],
        "answer": options.index(answer),
    }


def _gen(
    item_id: str, cap: str, prompt: str, check: Item | None, max_new: int, **extra: Any
) -> Item:
    item: Item = {"id": item_id, "capability": cap, "kind": "generate", "chat": True}
    item["prompt"] = prompt
    item.update(extra)
    item["max_new_tokens"] = max_new
    if check is not None:
        item["check"] = check
    return item


def _numbers(rng: random.Random, answer: int, n: int = 3, spread: int = 10) -> list[int]:
    """``n`` distinct plausible wrong numeric answers near ``answer`` (all non-negative)."""
    wrong: set[int] = set()
    while len(wrong) < n:
        cand = answer + rng.choice([-1, 1]) * rng.randint(1, spread)
        if cand >= 0 and cand != answer:
            wrong.add(cand)
    return sorted(wrong)


# ------------------------------------------------------------------------------ CAN

NAMES = ["Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Leo", "Emma", "Max", "Zoe", "Jack", "Lily"]
THINGS = ["apples", "books", "pencils", "marbles", "stickers", "cookies", "cards", "balloons"]


def c1_knowledge() -> list[Item]:
    rng = _rng("C1")
    items = []
    for f in _read("c1_facts.jsonl"):
        if "target" in f:
            items.append(
                {
                    "id": f"c1-{f['id']}",
                    "capability": "C1",
                    "kind": "target",
                    "prompt": f["prompt"],
                    "target": " " + f["target"],
                    "tags": ["completion"],
                }
            )
        else:
            prompt = _qa(f["question"])
            item = _choice(rng, f"c1-{f['id']}", "C1", prompt, f["answer"], f["distractors"])
            items.append({**item, "tags": ["facts"]})
    for n in range(30):  # arithmetic skills: one- and two-digit sums and products
        op = ["+", "-", "times"][n % 3]
        a, b = rng.randint(2, 19), rng.randint(2, 9)
        if op == "-":
            a += b
        value = a + b if op == "+" else a - b if op == "-" else a * b
        prompt = _qa(f"What is {a} {op} {b}?")
        wrong = map(str, _numbers(rng, value))
        item = _choice(rng, f"c1-arith-{n:02d}", "C1", prompt, str(value), wrong)
        items.append({**item, "tags": ["arithmetic"]})
    return items


def c2_reasoning() -> list[Item]:
    """Multi-step arithmetic, one- and two-step word problems, and orderings (all MC).

    Forms the 135M base model passes clearly above chance were kept; syllogisms answered
    "Yes"/"No", "which is bigger" and clock arithmetic scored at or below chance for it.
    """
    rng = _rng("C2")
    items = []
    for n in range(80):
        who, thing = rng.choice(NAMES), rng.choice(THINGS)
        a, b, c = rng.randint(3, 12), rng.randint(2, 9), rng.randint(1, 5)
        form = n % 4
        if form == 0:  # three-term sums
            q, value = f"What is {a} + {b} + {c}?", a + b + c
        elif form == 1:  # one-step word problem
            q, value = f"{who} has {a + c} {thing} and gives away {c}. How many are left?", a
        elif form == 2:  # two-step word problem
            q = (
                f"{who} has {a} {thing}, gets {b} more and then gives away {c}. "
                f"How many {thing} does {who} have now?"
            )
            value = a + b - c
        else:  # ordering of three
            first, middle, last = rng.sample(NAMES, 3)
            q = (
                f"{first} finished the race before {middle}, and {middle} finished before "
                f"{last}. Who finished {'first' if n % 8 == 3 else 'last'}?"
            )
            answer = first if n % 8 == 3 else last
            wrong = [x for x in (first, middle, last) if x != answer]
            items.append(_choice(rng, f"c2-order-{n:02d}", "C2", _qa(q), answer, wrong))
            continue
        wrong_numbers = map(str, _numbers(rng, value, spread=6))
        kind = ("sum3", "word1", "word2")[form]
        items.append(_choice(rng, f"c2-{kind}-{n:02d}", "C2", _qa(q), str(value), wrong_numbers))
    return items


PETS = ["dog", "cat", "rabbit", "parrot", "hamster", "goldfish"]
CITIES = ["Leeds", "Dublin", "Lyon", "Porto", "Oslo", "Bergen", "Graz", "Turin", "Cork", "Nantes"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
JOBS = ["teacher", "baker", "nurse", "farmer", "pilot", "painter"]
PET_NAMES = ["Rex", "Bella", "Coco", "Milo", "Luna", "Max", "Daisy", "Oscar"]


def c3_comprehension() -> list[Item]:
    rng = _rng("C3")
    items = []
    for n in range(70):
        who = rng.choice(NAMES)
        city, colour, job = rng.choice(CITIES), rng.choice(COLOURS), rng.choice(JOBS)
        pet, pet_name, age = rng.choice(PETS), rng.choice(PET_NAMES), rng.randint(20, 60)
        passage = (
            f"{who} is a {age}-year-old {job} who lives in {city}. "
            f"{who} has a {pet} called {pet_name} and rides a {colour} bicycle to work every day."
        )
        form = n % 5
        if form < 4:  # a span question: the answer and three others of its kind
            question, answer, pool = (
                (f"In which city does {who} live?", city, CITIES),
                (f"What is the name of {who}'s {pet}?", pet_name, PET_NAMES),
                (f"What is {who}'s job?", job, JOBS),
                (f"What colour is {who}'s bicycle?", colour, COLOURS),
            )[form]
            q, wrong = question, rng.sample([x for x in pool if x != answer], 3)
        else:  # yes / no
            other = rng.choice([c for c in CITIES if c != city])
            asked = rng.choice([city, other])
            q, answer = f"Does {who} live in {asked}?", "Yes" if asked == city else "No"
            wrong = ["No" if answer == "Yes" else "Yes"]
        prompt = f"Read the text and answer the question.\nText: {passage}\n{_qa(q)}"
        items.append(_choice(rng, f"c3-passage-{n:02d}", "C3", prompt, answer, wrong))
    return items


def c4_faithfulness() -> list[Item]:
    rng = _rng("C4")
    items = []
    for f in _read("c4_misconceptions.jsonl"):
        items.append(
            _choice(rng, f"c4-{f['id']}", "C4", _qa(f["question"]), f["answer"], f["distractors"])
        )
    facts = [f for f in _read("c1_facts.jsonl") if "question" in f]
    for f in rng.sample(facts, 40):  # answer from a counterfactual context
        fake = rng.choice(f["distractors"])
        context = f'In this story, the answer to the question "{f["question"]}" is {fake}.'
        prompt = f"Answer using only the context.\nContext: {context}\n{_qa(f['question'])}"
        wrong = [f["answer"], *[d for d in f["distractors"] if d != fake]]
        items.append(_choice(rng, f"c4-context-{f['id']}", "C4", prompt, fake, wrong))
    return items


def c5a_paraphrase() -> list[Item]:
    rng = _rng("C5a")
    items = []
    for g in _read("c5a_paraphrase.jsonl"):
        for k, phrasing in enumerate(g["phrasings"], start=1):
            item = _choice(
                rng, f"c5a-{g['group']}-{k}", "C5a", _qa(phrasing), g["answer"], g["distractors"]
            )
            item["group"] = g["group"]
            items.append(item)
    return items


def c5b_domain_shift() -> list[Item]:
    rng = _rng("C5b")
    items = []
    for f in _read("c5b_commonsense.jsonl"):
        items.append(
            _choice(rng, f"c5b-{f['id']}", "C5b", f["context"], f["ending"], f["distractors"])
        )
    return items


LABELS = {
    "en": ("Question", "Answer"),
    "fr": ("Question", "Réponse"),
    "de": ("Frage", "Antwort"),
    "es": ("Pregunta", "Respuesta"),
    "it": ("Domanda", "Risposta"),
    "pt": ("Pergunta", "Resposta"),
}


def c5c_multilingual() -> list[Item]:
    rng = _rng("C5c")
    items = []
    for f in _read("c5c_multilingual.jsonl"):
        prompt = _qa(f["question"], LABELS[f["lang"]])
        item = _choice(
            rng, f"c5c-{f['id']}-{f['lang']}", "C5c", prompt, f["answer"], f["distractors"]
        )
        item["lang"] = f["lang"]
        items.append(item)
    return items


# ------------------------------------------------------------------------------ WILL


def w1_willingness() -> list[Item]:
    items = []
    for f in _read("w1_requests.jsonl"):
        check = {"type": "refusal", "expect": f["type"] == "harmful"}
        items.append(_gen(f"w1-{f['id']}", "W1", f["prompt"], check, 32, tags=[f["type"]]))
    return items


def w3a_verbosity() -> list[Item]:
    return [
        _gen(f"w3a-{f['id']}", "W3a", f["prompt"], None, 96) for f in _read("w3_open_prompts.jsonl")
    ]


W3B_TOPICS = [
    "staying focused while studying",
    "saving money on groceries",
    "sleeping better",
    "learning a new language",
    "keeping a houseplant alive",
    "preparing for a job interview",
    "starting to run",
    "packing for a weekend trip",
    "writing a clear email",
    "organising a small kitchen",
    "making friends in a new city",
    "reducing screen time",
    "cooking rice",
    "training a puppy",
    "keeping a bike in good shape",
    "planning a birthday party",
    "reading more books",
    "staying warm in winter",
    "drinking more water",
    "giving a short speech",
]
W3B_FORMS = ["What are some tips for {}?", "How should a beginner approach {}?"]


def w3b_formatting() -> list[Item]:
    items = []
    for form_no, form in enumerate(W3B_FORMS):
        for n, topic in enumerate(W3B_TOPICS):
            items.append(_gen(f"w3b-{form_no}-{n:02d}", "W3b", form.format(topic), None, 64))
    return items


# ------------------------------------------------------------------------------ HOW

H1_TASKS = [
    "Describe the ocean",
    "Write about your favourite season",
    "Explain why people keep pets",
    "Describe a busy market",
    "Write about a rainy afternoon",
    "Explain what a library is for",
    "Describe a mountain village",
    "Write about learning to swim",
    "Explain why sleep matters",
    "Describe a city at night",
    "Write about a walk in the forest",
    "Explain how a bicycle works",
]


def _h1_constraints(rng: random.Random) -> list[tuple[str, Item]]:
    word = rng.choice(["sun", "water", "friend", "light", "green"])
    n_bullets = rng.choice([2, 3])
    start = rng.choice(["Yes", "Today", "Well"])
    limit = rng.choice([20, 30, 40])
    return [
        ("Use only lowercase letters.", {"type": "all_lowercase"}),
        ("Write everything in capital letters.", {"type": "all_uppercase"}),
        (f"Use fewer than {limit} words.", {"type": "word_count", "max": limit - 1}),
        ("Do not use any commas.", {"type": "no_commas"}),
        (f'Start your answer with the word "{start}".', {"type": "starts_with", "value": start}),
        (f'Include the word "{word}".', {"type": "keywords", "words": [word]}),
        (
            'Do not use the words "the" or "and".',
            {"type": "forbidden_words", "words": ["the", "and"]},
        ),
        (
            f"Answer with exactly {n_bullets} bullet points using '-'.",
            {"type": "bullet_count", "min": n_bullets, "max": n_bullets},
        ),
        ("Wrap your whole answer in double quotation marks.", {"type": "quoted"}),
        (
            "Give your answer a title wrapped in double angular brackets, like <<title>>.",
            {"type": "title"},
        ),
        ("Answer in exactly one sentence.", {"type": "sentence_count", "min": 1, "max": 1}),
        (
            "Highlight at least one phrase with asterisks, like *this*.",
            {"type": "highlight_count", "min": 1},
        ),
    ]


def _compatible(a: Item, b: Item) -> bool:
    clash = [
        {"all_lowercase", "all_uppercase"},
        {"all_lowercase", "title"},
        {"quoted", "bullet_count"},
        {"bullet_count", "sentence_count"},
        {"starts_with", "quoted"},
        {"starts_with", "title"},
        {"all_lowercase", "starts_with"},
        {"all_uppercase", "starts_with"},
        {"all_uppercase", "keywords"},
        {"all_uppercase", "forbidden_words"},
    ]
    return a["type"] != b["type"] and {a["type"], b["type"]} not in clash


def h1_instructions() -> list[Item]:
    rng = _rng("H1")
    items = []
    for n in range(60):
        task = H1_TASKS[n % len(H1_TASKS)]
        pool = _h1_constraints(rng)
        first = pool[n % len(pool)]
        chosen = [first]
        if n >= 24:  # the later items combine two constraints (prompt-level strict pass)
            second = rng.choice([c for c in pool if _compatible(first[1], c[1])])
            chosen.append(second)
        text = f"{task} in a few sentences. " + " ".join(c[0] for c in chosen)
        checks = [c[1] for c in chosen]
        check = checks[0] if len(checks) == 1 else {"type": "all_of", "checks": checks}
        items.append(_gen(f"h1-ifeval-{n:02d}", "H1", text, check, 64))
    return items


H2_ENTITIES = [
    ("a book", {"title": "string", "author": "string", "year": "integer"}),
    ("a city", {"name": "string", "country": "string", "population": "integer"}),
    ("a person", {"name": "string", "age": "integer"}),
    ("a product", {"name": "string", "price": "number", "in_stock": "boolean"}),
    ("a movie", {"title": "string", "year": "integer"}),
    ("a pet", {"name": "string", "species": "string", "age": "integer"}),
    ("a country", {"name": "string", "capital": "string"}),
    ("a recipe", {"name": "string", "minutes": "integer", "ingredients": "array"}),
    ("a song", {"title": "string", "artist": "string"}),
    ("a car", {"make": "string", "model": "string", "year": "integer"}),
]


def h2_format() -> list[Item]:
    items = []
    styles = [
        "Return only a JSON object describing {what} with the keys {keys}.",
        "Describe {what} as JSON. Use exactly these keys: {keys}. Output only the JSON.",
        "Output a JSON object for {what} with fields {keys}. No other text.",
        "Give me {what} in JSON format with the keys {keys}.",
    ]
    for n in range(40):
        what, fields = H2_ENTITIES[n % len(H2_ENTITIES)]
        style = styles[(n // len(H2_ENTITIES)) % len(styles)]
        keys = ", ".join(
            f'"{k}" ({t if t != "array" else "a list of strings"})' for k, t in fields.items()
        )
        props = {
            k: ({"type": "array", "items": {"type": "string"}} if t == "array" else {"type": t})
            for k, t in fields.items()
        }
        schema = {"type": "object", "properties": props, "required": list(fields)}
        prompt = style.format(what=what, keys=keys)
        items.append(
            _gen(f"h2-json-{n:02d}", "H2", prompt, {"type": "json_schema", "schema": schema}, 64)
        )
    return items


TOOLS = [
    (
        "get_weather",
        "Get the current weather for a city.",
        {"city": "string"},
        ["What is the weather like in {city} right now?", "Is it raining in {city}?"],
        lambda r: {"city": r.choice(["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Sydney"])},
    ),
    (
        "convert_currency",
        "Convert an amount between currencies.",
        {"amount": "number", "from": "string", "to": "string"},
        ["How much is {amount} {from} in {to}?", "Convert {amount} {from} to {to}."],
        lambda r: dict(
            zip(
                ("amount", "from", "to"),
                (r.choice([10, 25, 100, 250]), *r.sample(["USD", "EUR", "JPY", "GBP"], 2)),
                strict=True,
            )
        ),
    ),
    (
        "set_timer",
        "Start a countdown timer.",
        {"minutes": "integer"},
        ["Set a timer for {minutes} minutes.", "Please start a {minutes} minute timer."],
        lambda r: {"minutes": r.choice([3, 5, 10, 15, 20, 45])},
    ),
    (
        "send_email",
        "Send a short email.",
        {"to": "string", "subject": "string"},
        ["Send an email to {to} with the subject {subject}.", "Email {to} about {subject}."],
        lambda r: {
            "to": r.choice(["anna@example.com", "ben@example.com", "team@example.com"]),
            "subject": r.choice(["lunch", "the meeting", "holidays"]),
        },
    ),
    (
        "search_recipes",
        "Find recipes that use an ingredient.",
        {"ingredient": "string"},
        ["Find me a recipe with {ingredient}.", "What can I cook with {ingredient}?"],
        lambda r: {"ingredient": r.choice(["rice", "eggs", "tomatoes", "chicken", "lentils"])},
    ),
]


_EXAMPLE_TOOL = {
    "name": "get_time",
    "description": "Get the current time in a city.",
    "parameters": {"city": "string"},
}


def h3_tools() -> list[Item]:
    """A request, the tools on offer (as a system turn) and one demonstration turn.

    The demonstration calls a tool that no item asks for, so it teaches the format without
    giving the answer; without it the 135M base model never emits a call at all.
    """
    rng = _rng("H3")
    items = []
    for n in range(40):
        name, _, _, asks, draw = TOOLS[n % len(TOOLS)]
        offered = [TOOLS[n % len(TOOLS)], *rng.sample([t for t in TOOLS if t[0] != name], 2)]
        spec = [{"name": t[0], "description": t[1], "parameters": t[2]} for t in offered]
        spec.append(_EXAMPLE_TOOL)
        rng.shuffle(spec)
        args = draw(rng)
        ask = asks[(n // len(TOOLS)) % len(asks)].format(**args)
        system = (
            "You can call these tools:\n"
            + json.dumps(spec)
            + "\nAnswer every request with a JSON tool call only."
        )
        history = [
            {"role": "system", "content": system},
            {"role": "user", "content": "What time is it in Lima?"},
            {"role": "assistant", "content": '{"name": "get_time", "arguments": {"city": "Lima"}}'},
        ]
        check = {"type": "tool_call", "name": name, "arguments": args}
        items.append(_gen(f"h3-tool-{n:02d}", "H3", ask, check, 48, history=history))
    return items


H4_RULES: list[tuple[str, str, Item]] = [
    (
        "From now on, answer every question in capital letters only.",
        "OK, I WILL USE CAPITAL LETTERS ONLY.",
        {"type": "all_uppercase"},
    ),
    (
        "For the rest of our chat, reply in lowercase letters only.",
        "ok, i will only use lowercase letters.",
        {"type": "all_lowercase"},
    ),
    (
        "From now on, keep every answer under ten words.",
        "Understood, short answers only.",
        {"type": "word_count", "max": 10},
    ),
    (
        "In all your next answers, never use a comma.",
        "Understood. I will not use commas.",
        {"type": "no_commas"},
    ),
    (
        'From now on, begin every answer with the word "Sure".',
        "Sure. I will begin every answer that way.",
        {"type": "starts_with", "value": "Sure"},
    ),
]
H4_QUESTIONS = [
    "What is the capital of Italy?",
    "Name a fruit that is yellow.",
    "Why is the sky blue?",
    "What do bees make?",
    "How many days are in a week?",
    "What is your favourite colour and why?",
    "What do plants need to grow?",
    "Name two animals that live in the sea.",
]


def h4_multiturn() -> list[Item]:
    items = []
    for n in range(40):
        rule, ack, check = H4_RULES[n % len(H4_RULES)]
        question = H4_QUESTIONS[(n // len(H4_RULES)) % len(H4_QUESTIONS)]
        history = [{"role": "user", "content": rule}, {"role": "assistant", "content": ack}]
        items.append(_gen(f"h4-turns-{n:02d}", "H4", question, check, 32, history=history))
    return items


H6_FACTS = [  # (topic as it reads mid-sentence, source text)
    ("honeybees", "Honeybees tell each other where flowers are by dancing."),
    ("the Nile", "The Nile flows north into the Mediterranean Sea."),
    ("Mercury", "Mercury is the planet closest to the Sun."),
    ("penguins", "Penguins cannot fly but swim very well."),
    ("bamboo", "Some kinds of bamboo can grow almost a metre in one day."),
    ("octopuses", "An octopus has three hearts."),
    ("the Sahara", "The Sahara is the largest hot desert in the world."),
    ("camels", "Camels store fat, not water, in their humps."),
    ("Venus", "Venus is the hottest planet in the Solar System."),
    ("owls", "Owls can turn their heads much further than humans can."),
]


def h6_citation() -> list[Item]:
    """Three numbered sources, a question on one of them, one demonstration turn.

    Even items pass only when they cite the right source (source accuracy); odd items pass
    with any well-formed citation of a given source (format rate).
    """
    rng = _rng("H6")
    items = []
    system = "Answer in one sentence from the sources and end with the source id in brackets."
    example = "Sources:\n[S1] Copper conducts electricity well.\n[S2] The Moon orbits the Earth."
    for n in range(40):
        picked = rng.sample(H6_FACTS, 3)
        target = rng.randrange(3)
        passages = "\n".join(f"[S{k + 1}] {text}" for k, (_, text) in enumerate(picked))
        prompt = f"Sources:\n{passages}\nTell me about {picked[target][0]}."
        history = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{example}\nTell me about copper."},
            {"role": "assistant", "content": "Copper conducts electricity well [S1]."},
        ]
        accuracy = n % 2 == 0
        sources = [f"S{target + 1}"] if accuracy else ["S1", "S2", "S3"]
        check = {"type": "citation", "sources": sources}
        tags = ["source"] if accuracy else ["format"]
        items.append(_gen(f"h6-cite-{n:02d}", "H6", prompt, check, 40, history=history, tags=tags))
    return items


# ------------------------------------------------------------------------------ D


def d_distribution() -> list[Item]:
    items: list[Item] = [
        {"id": f["id"], "capability": "D", "kind": "distribution", "text": f["text"]}
        for f in _read("d_texts.jsonl")
    ]
    for f in _read("d_prompts.jsonl"):
        items.append(
            {
                "id": f["id"],
                "capability": "D",
                "kind": "distribution",
                "chat": True,
                "prompt": f["prompt"],
                "max_new_tokens": 48,
            }
        )
    return items


# ------------------------------------------------------------------------------ suites

# id, name, group, metric (None: the natural one), file, generator
CAPABILITIES: list[tuple[str, str, str, str | None, str, Callable[[], list[Item]]]] = [
    ("C1", "parametric knowledge & skills", "CAN", None, "c1_knowledge.jsonl", c1_knowledge),
    ("C2", "reasoning", "CAN", None, "c2_reasoning.jsonl", c2_reasoning),
    ("C3", "contextual comprehension", "CAN", None, "c3_comprehension.jsonl", c3_comprehension),
    ("C4", "faithfulness & grounding", "CAN", None, "c4_faithfulness.jsonl", c4_faithfulness),
    ("C5a", "prompt-form invariance", "CAN", None, "c5a_paraphrase.jsonl", c5a_paraphrase),
    ("C5b", "domain-shift robustness", "CAN", None, "c5b_commonsense.jsonl", c5b_domain_shift),
    ("C5c", "multilingual stability", "CAN", None, "c5c_multilingual.jsonl", c5c_multilingual),
    ("W1", "willingness to answer", "WILL", None, "w1_willingness.jsonl", w1_willingness),
    ("W3a", "verbosity", "WILL", None, "w3a_verbosity.jsonl", w3a_verbosity),
    ("W3b", "formatting use", "WILL", "formatted", "w3b_formatting.jsonl", w3b_formatting),
    ("H1", "instruction following", "HOW", None, "h1_instructions.jsonl", h1_instructions),
    ("H2", "output-format fidelity", "HOW", None, "h2_format.jsonl", h2_format),
    ("H3", "tool use", "HOW", None, "h3_tools.jsonl", h3_tools),
    ("H4", "multi-turn commitment", "HOW", None, "h4_multiturn.jsonl", h4_multiturn),
    ("H6", "citation", "HOW", None, "h6_citation.jsonl", h6_citation),
    ("D", "output distribution", "other", None, "d_distribution.jsonl", d_distribution),
]

# Named metrics (manifest "metrics"): where CapTrack reports several metrics for a capability,
# each is reported on its own and the capability's Δ% is the mean of theirs (docs/suites.md).
METRICS: dict[str, list[Item]] = {
    "C1": [
        {"name": "facts", "metric": "score", "tags": ["facts"]},
        {"name": "completion", "metric": "score", "tags": ["completion"]},
        {"name": "arithmetic", "metric": "score", "tags": ["arithmetic"]},
    ],
    "W1": [
        {"name": "unsafe_refusal", "metric": "score", "tags": ["harmful"]},
        {"name": "benign_compliance", "metric": "score", "tags": ["benign", "borderline"]},
    ],
    "W3a": [
        {"name": "length_mean", "metric": "words"},
        {"name": "length_spread", "metric": "words", "stat": "std"},
    ],
    "H6": [
        {"name": "format", "metric": "score", "tags": ["format"]},
        {"name": "source", "metric": "score", "tags": ["source"]},
    ],
}

# quick: items per capability for live monitoring on a CPU, at least 24 each (docs/suites.md
# has the interval each buys). Generation used to dominate a CPU round; with draft-verified
# decoding (driftwatch/runner/drafts.py) a reply the model still gives costs one forward
# pass. Generate items keep short prompts and decode at most QUICK_NEW_TOKENS. C2 (at chance
# for 135M models) and the long-prompt H-capabilities stay in standard.
# W3a and W3b: all of standard's items at standard's new tokens, so that the live round
# reads verbosity and formatting as the offline evaluation does (docs/calibration.md):
# - W3b, 40: with 24 (base 8 formatted) a fine-tune's loss of formatting that standard found
#   (-62.5%, 2026-12-04) stayed within quick's family-wide interval;
# - W3a, 48 at 96 tokens: with 24 at 32 (base replies nearly all cut at 32 tokens) a narrow
#   fine-tune's verbosity change that standard found at step 4 was real for the family
#   live only a round later, and the defaults acted 2 rounds after standard saw it.
QUICK = {"C1": 24, "C4": 24, "W1": 24, "W3a": 48, "W3b": 40, "H2": 24, "D": 27}
QUICK_D_TEXTS = 24  # of D's items, fixed texts; the rest are prompts the base model continues
QUICK_NEW_TOKENS = 32
# W3b keeps standard's 64: the base model opens a list after a lead-in sentence, so at 32 new
# tokens it formatted 4 of 24 quick replies and a loss of formatting barely showed
QUICK_NEW_TOKENS_FOR = {"W3a": 96, "W3b": 64}

DESCRIPTIONS = {
    "standard": "Every CapTrack capability (CAN / WILL / HOW) plus output distribution, "
    "scored without a judge. Built by source/build.py; see docs/suites.md.",
    "quick": "A seeded subset of 'standard' small enough for a live demo on a CPU "
    "(CAN, WILL, HOW and D). Built by source/build.py; see docs/suites.md.",
}


def _quick_subset(cap: str, items: list[Item]) -> list[Item]:
    rng = _rng(f"quick-{cap}")
    if cap == "W1":  # keep both directions of willingness
        harmful = [i for i in items if i["check"]["expect"]]
        other = [i for i in items if not i["check"]["expect"]]
        half = QUICK[cap] // 2
        picked = rng.sample(harmful, half) + rng.sample(other, QUICK[cap] - half)
    elif cap == "D":  # fixed texts and base continuations alike
        texts = [i for i in items if "text" in i]
        prompts = [i for i in items if "prompt" in i]
        picked = rng.sample(texts, QUICK_D_TEXTS) + rng.sample(prompts, QUICK[cap] - QUICK_D_TEXTS)
    else:
        picked = rng.sample(items, QUICK[cap])
    order = {i["id"]: n for n, i in enumerate(items)}
    cap_tokens = QUICK_NEW_TOKENS_FOR.get(cap, QUICK_NEW_TOKENS)
    out = []
    for item in sorted(picked, key=lambda i: order[i["id"]]):
        if "max_new_tokens" in item:
            item = {**item, "max_new_tokens": min(item["max_new_tokens"], cap_tokens)}
        out.append(item)
    return out


def _selects(metric: Item, items: list[Item]) -> bool:
    tags = set(metric.get("tags", []))
    return not tags or any(tags & set(i.get("tags", [])) for i in items)


def _jsonl(items: list[Item]) -> str:
    return "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)


def build() -> dict[Path, str]:
    """Every file of both suites: path -> exact text."""
    files: dict[Path, str] = {}
    for suite in ("standard", "quick"):
        caps = []
        for cid, name, group, metric, file, make in CAPABILITIES:
            items = make()
            if suite == "quick":
                if cid not in QUICK:
                    continue
                items = _quick_subset(cid, items)
            files[SUITES / suite / file] = _jsonl(items)
            entry: Item = {"id": cid, "name": name, "group": group}
            if metric:
                entry["metric"] = metric
            # a metric whose items the quick subset left out is not reported there
            defs = [d for d in METRICS.get(cid, []) if _selects(d, items)]
            if defs:
                entry["metrics"] = defs
            entry["files"] = [file]
            caps.append(entry)
        manifest = {
            "format": 1,
            "name": suite,
            "description": DESCRIPTIONS[suite],
            "defaults": {"chat": False, "max_new_tokens": 32},
            "capabilities": caps,
        }
        files[SUITES / suite / "manifest.json"] = (
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a checked-in file differs")
    args = parser.parse_args(argv)
    files = build()
    stale = [
        p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text
    ]
    folders = {p.parent for p in files}
    extra = sorted(p for f in folders if f.is_dir() for p in f.iterdir() if p not in files)
    if args.check:
        for p in stale:
            print(f"differs from the generator's output: {p}", file=sys.stderr)
        for p in extra:
            print(f"not written by the generator: {p}", file=sys.stderr)
        return 1 if stale or extra else 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode("utf-8"))
    for p in extra:
        p.unlink()
    print(f"wrote {len(files)} files ({len(stale)} changed, {len(extra)} removed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
