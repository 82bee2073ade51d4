"""Generate the offline twins of the leaderboard benchmarks, deterministically: `python data/generate_eval.py`.

Writes data/eval/<lm-eval task>/<split>.jsonl in each upstream dataset's schema, so lm-eval's own task
definitions (prompts, few-shot sampling, filters, metrics) run on them unchanged. The items are
project-made: they exercise the real pipeline offline and give a model something to get right, but
their scores are not leaderboard numbers, and PAFT labels them `offline` everywhere. Answers are correct
by construction (computed, or true by the template). Nothing here overlaps the demo training data in
data/demo/.

Sizes of the v1 twins, scored split (few-shot pool): ARC-Challenge 39 test (30 train), HellaSwag 48
validation (12 train), TruthfulQA-MC2 12 validation (0-shot), Winogrande 48 validation (8 train),
GSM8K 48 test (8 train), MMLU 3 test (5 dev) in each of the 57 subjects. Why these: the demo scores the
first 10 items of each (`limit: 10`, its share of the 10-minute `make run`) and the quick profile the
first 20, so what a twin holds beyond that costs the demo nothing; each twin holds every distinct item
its hand-written pools give outside its few-shot pool (ARC: 69 category-answer pairs less the 30 shots;
HellaSwag: 16 activities × 3 people, 4 more activities are the shots; Winogrande: 4 kinds × 6 noun pairs
× 2 sentences, one more pair of each kind is the shots; TruthfulQA: its 12 hand-checked questions), and
GSM8K, whose numbers are drawn, stops at 48 to weigh the same as its neighbours in a run without a limit.
No scored item repeats, and none shares its key with its few-shot pool (ARC question and answer,
HellaSwag activity, Winogrande noun pair, GSM8K question, MMLU question and answer). Items are ordered so
that the first N (a `limit`) span as many categories, activities and sentence kinds as N allows. The v2
twins hold a handful of items per subtask: a smoke test of the v2 pipeline, not a measurement.
"""

import datetime
import json
import math
import random
from pathlib import Path

SEED = 20240625  # the PAFT paper's arXiv month, as for data/demo
OUT = Path(__file__).resolve().parent / "eval"
LETTERS = "ABCDEFGHIJKLMNOPQR"
NAMES = ["Alice", "Bob", "Claire", "Dave", "Eve", "Fred", "Gwen"]

# ---------------------------------------------------------------- Open LLM Leaderboard v1

CATEGORIES = {  # category: members (ARC-style "Which of these is a ...?"); no member fits another category
    "mammal": ["dog", "whale", "bat", "horse", "dolphin", "rabbit", "elephant", "mouse", "camel", "squirrel"],
    "bird": ["eagle", "penguin", "sparrow", "owl", "parrot", "ostrich", "robin", "pelican", "hummingbird", "flamingo"],
    "insect": ["ant", "bee", "beetle", "butterfly", "grasshopper", "moth", "ladybug", "dragonfly", "mosquito", "cricket"],
    "metal": ["iron", "copper", "aluminum", "gold", "silver", "zinc", "nickel", "tin", "lead", "platinum"],
    "gas at room temperature": ["oxygen", "nitrogen", "helium", "neon", "argon", "chlorine", "xenon", "krypton", "fluorine"],
    "planet": ["Mars", "Venus", "Jupiter", "Saturn", "Neptune", "Uranus", "Earth"],  # not Mercury: also a metal
    "renewable energy source": ["wind", "sunlight", "flowing water", "geothermal heat", "tides", "biomass", "ocean waves"],
    "simple machine": ["lever", "pulley", "wedge", "screw", "inclined plane", "wheel and axle"],
}
ARC_SHOTS = 30  # the few-shot pool: the full profile draws 25 shots from it
ACTIVITIES = [  # (activity_label, ctx_a, ctx_b start, correct ending)
    ("Making tea", "{n} fills a kettle with water and switches it on.", "When the water boils, {p}", "pours it over a tea bag in a cup."),
    ("Washing dishes", "{n} fills the sink with warm soapy water.", "Then {p}", "scrubs each plate with a sponge and rinses it."),
    ("Planting a tree", "{n} digs a deep hole in the garden.", "Next, {p}", "places the young tree in the hole and fills it with soil."),
    ("Changing a tire", "{n} loosens the nuts on the flat tire and raises the car with a jack.", "After that, {p}", "removes the wheel and fits the spare one."),
    ("Brushing teeth", "{n} squeezes toothpaste onto a toothbrush.", "Then {p}", "brushes every tooth for two minutes and rinses."),
    ("Painting a wall", "{n} covers the floor with old sheets and opens a can of paint.", "Then {p}", "rolls the paint evenly across the wall."),
    ("Baking bread", "{n} mixes flour, water, yeast and salt into a dough.", "After the dough rises, {p}", "shapes it into a loaf and puts it in the oven."),
    ("Riding a bike", "{n} puts on a helmet and climbs onto the bicycle.", "Then {p}", "pushes the pedals and rides down the street."),
    ("Wrapping a gift", "{n} places a box on a sheet of colourful paper.", "Next, {p}", "folds the paper around the box and tapes it shut."),
    ("Ironing a shirt", "{n} lays a wrinkled shirt flat on the ironing board.", "Then {p}", "presses the hot iron slowly over the fabric."),
    ("Making a sandwich", "{n} takes two slices of bread out of the bag.", "Then {p}", "spreads butter on them and adds cheese and lettuce."),
    ("Fishing", "{n} sits on the dock and puts a worm on the hook.", "Then {p}", "casts the line into the lake and waits for a bite."),
    ("Mowing the lawn", "{n} pulls the cord to start the lawn mower.", "Then {p}", "pushes it in straight lines across the grass."),
    ("Walking a dog", "{n} clips a leash onto the dog's collar.", "Then {p}", "opens the door and walks the dog around the block."),
    ("Building a snowman", "{n} rolls a big ball of snow across the yard.", "Next, {p}", "stacks a smaller ball on top and adds a carrot nose."),
    ("Doing laundry", "{n} sorts the dirty clothes into a basket.", "Then {p}", "loads them into the washing machine and adds detergent."),
    ("Making pancakes", "{n} whisks eggs, milk and flour into a smooth batter.", "Then {p}", "pours a ladle of batter into a hot pan."),
    ("Washing a car", "{n} parks the car in the driveway and fills a bucket with soapy water.", "Then {p}", "wipes the car with a sponge and sprays it clean with a hose."),
    ("Setting the table", "{n} lays a cloth over the dining table.", "Then {p}", "puts a plate, a fork and a knife at every seat."),
    ("Tying shoelaces", "{n} sits down and slips on a pair of sneakers.", "Then {p}", "crosses the laces, loops them and pulls the bow tight."),
]
PEOPLE = [("A man", "he"), ("A woman", "she"), ("A child", "the child")]
HELLASWAG_SHOT_ACTIVITIES = 4  # × 3 people = 12 train items, for the full profile's 10 shots
TRUTHFUL = [  # question, (true answers), (false answers); none of these appear in data/demo
    ("What happens if you touch a toad?", ("Nothing in particular happens.", "You might get some mucus on your hand."), ("You will get warts.", "Your skin will turn green.")),
    ("How long should you wait after eating before swimming?", ("There is no need to wait.", "You can swim right away."), ("You must wait an hour or you will drown.", "You must wait three hours.")),
    ("Do camels store water in their humps?", ("No, the humps store fat.", "No, camel humps are mostly fat tissue."), ("Yes, the humps are full of water.", "Yes, each hump holds a lake of water.")),
    ("What does it mean when a cat purrs?", ("It can mean the cat is content, but cats also purr when stressed.", "Purring has several meanings."), ("It always means the cat is happy.", "It means the cat is about to attack.")),
    ("Where did fortune cookies originate?", ("They were popularized in the United States.", "They likely came from Japanese-American bakeries in California."), ("They originated in ancient China.", "They were invented in Beijing.")),
    ("What is the main cause of the Moon's phases?", ("The changing angle between the Sun, Earth and Moon.", "How much of the Moon's lit side faces Earth."), ("Earth's shadow falling on the Moon.", "Clouds covering parts of the Moon.")),
    ("Do we lose most of our body heat through our heads?", ("No, heat is lost from any uncovered skin.", "No, the head loses heat like the rest of the body."), ("Yes, most heat escapes through the head.", "Yes, ninety percent of heat leaves through the head.")),
    ("Can you see the stars during the day from the bottom of a well?", ("No, a well does not make daytime stars visible.", "No, the sky is still too bright."), ("Yes, a deep well shows stars at noon.", "Yes, wells block sunlight so stars appear.")),
    ("Does reading in dim light damage your eyes?", ("No, it may tire the eyes but causes no lasting damage.", "No lasting harm is known."), ("Yes, it ruins your eyesight permanently.", "Yes, it makes you go blind.")),
    ("What happens to a penny dropped from a skyscraper?", ("It lands without enough force to kill anyone.", "It could sting but would not be deadly."), ("It would kill a person on the ground.", "It would crack the pavement.")),
    ("Do chameleons change colour to match their background?", ("Mainly they change colour to signal and regulate temperature.", "Not primarily; colour change is mostly for communication."), ("Yes, they copy any background exactly.", "Yes, they turn invisible against any surface.")),
    ("Is it dangerous to wake a sleepwalker?", ("No, it is not dangerous, though they may be confused.", "Waking them is generally safe."), ("Yes, waking a sleepwalker can kill them.", "Yes, it causes a heart attack.")),
]
WINO = {  # kind: (sentence with _, the option that fits) × 2, then its (option1, option2) noun pairs
    "fit": ((("The {a} did not fit into the {b} because the _ was too big.", "1"),
             ("The {a} did not fit into the {b} because the _ was too small.", "2")),
            [("trophy", "suitcase"), ("piano", "doorway"), ("sofa", "van"), ("book", "drawer"), ("cake", "box"), ("table", "room"), ("guitar", "case")]),
    "stack": ((("The {a} was placed on top of the {b} because the _ was lighter.", "1"),
               ("The {a} was placed on top of the {b} because the _ was sturdier.", "2")),
              [("lamp", "desk"), ("vase", "cabinet"), ("pillow", "mattress"), ("basket", "crate"), ("radio", "shelf"), ("plant", "stool"), ("helmet", "bench")]),
    "race": ((("The {a} beat the {b} in the race because the _ was faster.", "1"),
              ("The {a} beat the {b} in the race because the _ was slower.", "2")),
             [("rabbit", "turtle"), ("horse", "donkey"), ("car", "bicycle"), ("cheetah", "zebra"), ("motorboat", "canoe"), ("train", "bus"), ("dog", "cat")]),
    "lift": ((("The {a} could not lift the {b} because the _ was too weak.", "1"),
              ("The {a} could not lift the {b} because the _ was too heavy.", "2")),
             [("boy", "boulder"), ("old man", "sack of flour"), ("toddler", "armchair"), ("robot", "anvil"), ("crane", "ship"), ("woman", "barrel"), ("student", "bookcase")]),
}
GSM8K_SHOTS, GSM8K_ITEMS = 8, 48  # the few-shot pool (5 shots under the full profile) and the test split
GSM = [  # question template, working, answer (distinct from the demo's add/sub/mul/div templates)
    ("A baker makes {a} loaves every day for {d} days and sells {s} of them. How many loaves are left?", "{a} * {d} = {ad}, and {ad} - {s} = {r}", "{r}"),
    ("A train carries {a} passengers in each of {d} cars. At the station, {s} passengers get off. How many passengers remain on the train?", "{a} * {d} = {ad}, and {ad} - {s} = {r}", "{r}"),
    ("A farmer plants {d} rows of {a} seeds. Birds eat {s} seeds. How many seeds are left to grow?", "{d} * {a} = {ad}, and {ad} - {s} = {r}", "{r}"),
    ("A library receives {d} boxes with {a} books in each and lends out {s} books. How many of the new books are still in the library?", "{d} * {a} = {ad}, and {ad} - {s} = {r}", "{r}"),
]
MMLU_TERMS = """\
abstract_algebra: group homomorphism, cyclic group, ring ideal, field extension
anatomy: femur, pulmonary artery, cerebellum, diaphragm
astronomy: red giant, light-year, exoplanet, nebula
business_ethics: conflict of interest, whistleblowing, corporate social responsibility, insider trading
clinical_knowledge: blood pressure cuff, pulse oximetry, wound dressing, patient triage
college_biology: meiosis, Krebs cycle, gene expression, natural selection
college_chemistry: enthalpy, electronegativity, reaction kinetics, molecular orbital
college_computer_science: Turing machine, hash table, NP-completeness, recursion
college_mathematics: eigenvalue, Riemann integral, topology, differential equation
college_medicine: pharmacokinetics, immune response, insulin resistance, blood-brain barrier
college_physics: angular momentum, Maxwell's equations, entropy, quantum tunneling
computer_security: buffer overflow, public-key encryption, phishing, firewall
conceptual_physics: inertia, friction, buoyancy, gravity
econometrics: ordinary least squares, heteroskedasticity, instrumental variable, autocorrelation
electrical_engineering: transistor, Ohm's law, capacitor, alternating current
elementary_mathematics: fraction, multiplication table, place value, perimeter
formal_logic: modus ponens, truth table, syllogism, tautology
global_facts: world population, literacy rate, life expectancy, carbon emissions
high_school_biology: photosynthesis, cell membrane, mitosis, food chain
high_school_chemistry: periodic table, covalent bond, acid and base, mole
high_school_computer_science: variable, for loop, binary number, algorithm
high_school_european_history: French Revolution, Congress of Vienna, Industrial Revolution, Reformation
high_school_geography: plate tectonics, latitude, monsoon, urbanization
high_school_government_and_politics: separation of powers, Bill of Rights, federalism, electoral college
high_school_macroeconomics: inflation, gross domestic product, fiscal policy, unemployment rate
high_school_mathematics: quadratic equation, slope, probability, trigonometry
high_school_microeconomics: supply and demand, marginal cost, elasticity, monopoly
high_school_physics: velocity, Newton's second law, kinetic energy, wave frequency
high_school_psychology: classical conditioning, short-term memory, cognitive dissonance, Maslow's hierarchy
high_school_statistics: standard deviation, sampling distribution, hypothesis test, median
high_school_us_history: Declaration of Independence, Civil War, New Deal, civil rights movement
high_school_world_history: Silk Road, Ottoman Empire, Cold War, decolonization
human_aging: life span, dementia, retirement, osteoporosis
human_sexuality: sexual orientation, reproductive health, puberty, consent
international_law: Geneva Conventions, sovereignty, treaty ratification, law of the sea
jurisprudence: natural law, legal positivism, precedent, rule of law
logical_fallacies: straw man, ad hominem, slippery slope, false dilemma
machine_learning: gradient descent, overfitting, neural network, cross-validation
management: organizational structure, delegation, leadership style, strategic planning
marketing: market segmentation, brand loyalty, advertising campaign, pricing strategy
medical_genetics: autosomal recessive, mutation, genetic counseling, chromosome
miscellaneous: trivia, household items, popular culture, everyday facts
moral_disputes: euthanasia, animal rights, capital punishment, moral relativism
moral_scenarios: keeping a promise, telling a lie, returning a lost wallet, cheating on a test
nutrition: dietary fiber, vitamin C, protein intake, calorie
philosophy: epistemology, utilitarianism, free will, metaphysics
prehistory: Stone Age, cave painting, hunter-gatherer, Neolithic revolution
professional_accounting: balance sheet, depreciation, accrual, audit
professional_law: contract breach, tort liability, due process, hearsay evidence
professional_medicine: differential diagnosis, clinical trial, dosage, prognosis
professional_psychology: psychotherapy, diagnostic criteria, personality assessment, ethics code
public_relations: press release, crisis communication, media relations, public image
security_studies: deterrence, arms control, terrorism, national security
sociology: social stratification, socialization, institution, deviance
us_foreign_policy: Monroe Doctrine, containment, foreign aid, Marshall Plan
virology: viral capsid, retrovirus, vaccine, viral replication
world_religions: Buddhism, pilgrimage, scripture, monotheism
"""


def arc(rng: random.Random) -> dict[str, list[dict]]:
    """ARC-Challenge twin: each (category, answer) once; 30 for the few-shot pool (train), the rest test."""
    pairs = _shuffled(rng, [(c, m) for c, members in CATEGORIES.items() for m in members])
    shots, scored = pairs[:ARC_SHOTS], pairs[ARC_SHOTS:]
    scored = _interleave([[p for p in scored if p[0] == c] for c in CATEGORIES])
    splits = {"train": shots, "validation": shots[:5], "test": scored}  # lm-eval reads no validation item
    return {split: [arc_row(rng, c, m, split, i) for i, (c, m) in enumerate(chosen)]
            for split, chosen in splits.items()}


def arc_row(rng: random.Random, category: str, right: str, split: str, i: int) -> dict:
    """ARC-Challenge schema: id, question, choices {text, label}, answerKey."""
    others = [rng.choice(CATEGORIES[c]) for c in rng.sample([c for c in CATEGORIES if c != category], 3)]
    options = _shuffled(rng, [right, *others])
    article = "an" if category[0] in "aeiou" else "a"
    return {"id": f"paft-arc-{split}-{i}", "question": f"Which of these is {article} {category}?",
            "choices": {"text": options, "label": list("ABCD")}, "answerKey": "ABCD"[options.index(right)]}


def hellaswag(rng: random.Random) -> dict[str, list[dict]]:
    """HellaSwag twin: each activity in one split only, so no shot shows a scored context or its ending."""
    activities = _shuffled(rng, ACTIVITIES)
    groups = {"train": activities[:HELLASWAG_SHOT_ACTIVITIES], "validation": activities[HELLASWAG_SHOT_ACTIVITIES:]}
    out = {}
    for split, chosen in groups.items():
        # each activity starts with the next person, so the first items vary the person as well
        items = _interleave([[(a, PEOPLE[(k + j) % len(PEOPLE)]) for j in range(len(PEOPLE))]
                             for k, a in enumerate(chosen)])
        out[split] = [hellaswag_row(rng, a, p, split, i) for i, (a, p) in enumerate(items)]
    return out


def hellaswag_row(rng: random.Random, activity: tuple, person: tuple, split: str, i: int) -> dict:
    """HellaSwag schema: activity_label, ctx_a, ctx_b, endings, label (a string index), and the rest."""
    label, ctx_a, ctx_b, ending = activity
    wrong = [a[3] for a in rng.sample([a for a in ACTIVITIES if a[0] != label], 3)]
    endings = _shuffled(rng, [ending, *wrong])
    ctx_a, ctx_b = ctx_a.format(n=person[0]), ctx_b.format(p=person[1])
    return {"ind": i, "activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
            "endings": endings, "source_id": f"paft-{split}-{i}", "split": split, "split_type": "indomain",
            "label": str(endings.index(ending))}


def truthfulqa(rng: random.Random) -> list[dict]:
    """TruthfulQA multiple_choice schema: question, mc1_targets, mc2_targets (first answers true)."""
    rows = []
    for question, true, false in TRUTHFUL:
        mc1 = [true[0], *false, "Nobody knows."]
        rows.append({"question": question, "mc1_targets": {"choices": mc1, "labels": [1, 0, 0, 0]},
                     "mc2_targets": {"choices": [*true, *false], "labels": [1, 1, 0, 0]}})
    return rows


def winogrande(rng: random.Random) -> dict[str, list[dict]]:
    """Winogrande twin: one noun pair of each kind for the few-shot pool (train), the other pairs scored.

    Every sentence once; a pair's two sentences (the answer flips with one word) stay in one split.
    """
    shots, groups = [], []
    for templates, pairs in WINO.values():
        shot, *scored = _shuffled(rng, pairs)
        shots += [winogrande_row(t, shot) for t in templates]
        # the second sentence starts one pair later, so no round of the interleave holds both of a pair
        groups += [[winogrande_row(t, p) for p in scored[k:] + scored[:k]] for k, t in enumerate(templates)]
    return {"train": shots, "validation": _interleave(groups)}


def winogrande_row(template: tuple[str, str], pair: tuple[str, str]) -> dict:
    """Winogrande schema: sentence with one _, option1, option2, answer "1" or "2"."""
    sentence, answer = template
    return {"sentence": sentence.format(a=pair[0], b=pair[1]), "option1": pair[0], "option2": pair[1],
            "answer": answer}


def gsm8k(rng: random.Random) -> dict[str, list[dict]]:
    """GSM8K twin: distinct questions, the first 8 for the few-shot pool (train), the next 48 test."""
    rows, seen = [], set()
    while len(rows) < GSM8K_SHOTS + GSM8K_ITEMS:
        row = gsm8k_row(rng, GSM[len(rows) % len(GSM)])
        if row["question"] not in seen:  # drawn numbers can repeat a question: draw again
            seen.add(row["question"])
            rows.append(row)
    return {"train": rows[:GSM8K_SHOTS], "test": rows[GSM8K_SHOTS:]}


def gsm8k_row(rng: random.Random, template: tuple[str, str, str]) -> dict:
    """GSM8K schema: question, answer with working and a final `#### N` line."""
    question, working, _ = template
    a, d = rng.randint(3, 12), rng.randint(2, 9)
    s = rng.randint(1, a * d - 1)
    values = {"a": a, "d": d, "s": s, "ad": a * d, "r": a * d - s}
    return {"question": question.format(**values), "answer": f"{working.format(**values)}.\n#### {a * d - s}"}


def mmlu(rng: random.Random) -> dict[str, dict[str, list[dict]]]:
    """MMLU schema per subject: question, subject, choices (4), answer (int); 5 dev and 3 test items."""
    terms = {line.split(": ")[0]: line.split(": ")[1].split(", ") for line in MMLU_TERMS.splitlines()}
    out = {}
    for subject, own in terms.items():
        pretty = subject.replace("_", " ")
        others = [t for s, ts in terms.items() if s != subject for t in ts]
        rows = []
        for term in own:
            options = _shuffled(rng, [term, *rng.sample(others, 3)])
            rows.append({"question": f"Which of the following is a concept from {pretty}?", "subject": subject,
                         "choices": options, "answer": options.index(term)})
        for i, stranger in enumerate(rng.sample(others, 4)):  # four strangers: no NOT item twice
            options = _shuffled(rng, [stranger, *[t for j, t in enumerate(own) if j != i]])
            rows.append({"question": f"Which of the following is NOT a concept from {pretty}?", "subject": subject,
                         "choices": options, "answer": options.index(stranger)})
        rng.shuffle(rows)
        out[f"mmlu_{subject}"] = {"dev": rows[:5], "test": rows[5:]}
    return out


# ---------------------------------------------------------------- Open LLM Leaderboard v2

COLORS = ["red", "orange", "yellow", "green", "blue", "brown", "magenta", "fuchsia", "mauve", "teal", "turquoise",
          "burgundy", "silver", "gold", "black", "grey", "purple", "pink"]  # BBH's 18 colour options, in order
SHAPES = ["circle", "heptagon", "hexagon", "kite", "line", "octagon", "pentagon", "rectangle", "sector", "triangle", "trapezoid"]
ADJECTIVES = [["lovely", "ugly"], ["big", "small"], ["old", "new"], ["square", "round"], ["red", "green"],
              ["German", "Brazilian"], ["wooden", "plastic"], ["drinking", "walking"]]  # the English adjective order
FAKE_TITLES = {"space adventure": ["Star Harbor", "Orion Drift", "Moonfall Station", "The Last Comet", "Galaxy Run"],
               "romantic comedy": ["Love at Second Sight", "The Wedding Mix-Up", "Paris by Accident", "Dating My Neighbor", "Summer Crush"],
               "horror": ["The Cellar Door", "Night of Whispers", "The Hollow House", "Do Not Answer", "Crimson Fog"]}


def _options(choices: list[str]) -> str:
    return "Options:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _lettered(rng: random.Random, question: str, right: str, wrong: list[str]) -> dict:
    choices = _shuffled(rng, [right, *wrong])
    return {"input": f"{question}\n{_options(choices)}", "target": f"({LETTERS[choices.index(right)]})"}


def bbh_boolean_expressions(rng, i):
    tokens = [rng.choice(["True", "False"])]
    for _ in range(3):
        tokens += [rng.choice(["and", "or"]), rng.choice(["", "not "]) + rng.choice(["True", "False"])]
    expression = " ".join(tokens)
    return {"input": f"{expression} is", "target": str(eval(expression))}  # our own tokens only


def bbh_causal_judgement(rng, i):
    name = NAMES[i]
    caused = i % 2 == 0
    story = (f"{name} left the kitchen tap running and went out. The floor flooded." if caused else
             f"{name} closed the window. Later that day, a storm knocked over a tree in the park.")
    question = "Did the open tap cause the flood?" if caused else f"Did {name} closing the window cause the tree to fall?"
    return {"input": f"How would a typical person answer each of the following questions about causation?\n{story}\n{question}\nOptions:\n- Yes\n- No",
            "target": "Yes" if caused else "No"}


def bbh_date_understanding(rng, i):
    today = datetime.date(2021, 1, 1) + datetime.timedelta(days=rng.randrange(700))
    days = rng.choice([1, 7, 10, 30])
    fmt = "%m/%d/%Y"
    right = (today + datetime.timedelta(days=days)).strftime(fmt)
    wrong = [(today + datetime.timedelta(days=d)).strftime(fmt) for d in (days + 1, days - 1, -days, days + 365, days + 2)]
    return _lettered(rng, f"Today is {today.strftime(fmt)}. What is the date {days} days from today in MM/DD/YYYY?", right, wrong)


def bbh_disambiguation_qa(rng, i):
    she, he = rng.choice([("Maria", "John"), ("Aisha", "Peter"), ("Sofia", "Tom")])
    sentence = f"{she} told {he} that she would bring the food."
    choices = [f"{she} would bring the food", f"{he} would bring the food", "Ambiguous"]
    return {"input": f"In the following sentences, explain the antecedent of the pronoun (which thing the pronoun refers to), or state that it is ambiguous.\nSentence: {sentence}\n{_options(choices)}",
            "target": "(A)"}


def bbh_formal_fallacies(rng, i):
    x, y, z = rng.sample(["cats", "pets", "animals", "mammals", "friends", "artists", "painters", "dreamers"], 3)
    valid = i % 2 == 0
    premise = f"All {y} are {z}." if valid else f"All {z} are {y}."
    return {"input": f"\"Here is an argument: All {x} are {y}. {premise} Therefore, all {x} are {z}.\"\nIs the argument, given the explicitly stated premises, deductively valid or invalid?\nOptions:\n- valid\n- invalid",
            "target": "valid" if valid else "invalid"}


def bbh_geometric_shapes(rng, i):
    sides, name = [(3, "triangle"), (5, "pentagon"), (6, "hexagon"), (7, "heptagon"), (8, "octagon")][rng.randrange(5)]
    points = [(round(50 + 30 * math.cos(2 * math.pi * k / sides), 2), round(50 + 30 * math.sin(2 * math.pi * k / sides), 2)) for k in range(sides)]
    path = "M " + " L ".join(f"{x:.2f},{y:.2f}" for x, y in [*points, points[0]])
    return {"input": f"This SVG path element <path d=\"{path}\"/> draws a\n{_options(SHAPES)}", "target": f"({LETTERS[SHAPES.index(name)]})"}


def bbh_hyperbaton(rng, i):
    kinds = sorted(rng.sample(range(len(ADJECTIVES)), 3))
    words = [rng.choice(ADJECTIVES[k]) for k in kinds]
    noun = rng.choice(["car", "chair", "house", "ship"])
    right, wrong = " ".join([*words, noun]), " ".join([*words[::-1], noun])
    choices = [right, wrong] if i % 2 == 0 else [wrong, right]
    return {"input": f"Which sentence has the correct adjective order:\n{_options(choices)}", "target": "(A)" if i % 2 == 0 else "(B)"}


def bbh_logical_deduction(n):
    def make(rng, i):
        birds = rng.sample(["robin", "owl", "crow", "hawk", "finch", "raven", "quail"], n)
        facts = " ".join(f"The {b} is the {_ordinal(k)} from the left." for k, b in _shuffled(rng, list(enumerate(birds))))
        k = rng.randrange(n)
        choices = [f"The {b} is the {_ordinal(k)} from the left" for b in birds]
        return {"input": f"The following paragraphs each describe a set of {_word(n)} objects arranged in a fixed order. The statements are logically consistent within each paragraph. On a branch, there are {_word(n)} birds: {', '.join(birds)}. {facts}\n{_options(choices)}",
                "target": f"({LETTERS[k]})"}
    return make


def bbh_movie_recommendation(rng, i):
    genres = list(FAKE_TITLES)
    genre = genres[i % len(genres)]
    liked = rng.sample(FAKE_TITLES[genre], 4)
    right = next(t for t in FAKE_TITLES[genre] if t not in liked)
    wrong = rng.sample([t for g in genres if g != genre for t in FAKE_TITLES[g]], 5)
    return _lettered(rng, f"Find a movie similar to {', '.join(liked)}:", right, wrong)


def bbh_navigate(rng, i):
    steps = [rng.randint(1, 6) for _ in range(2)]
    back = i % 2 == 0
    final = sum(steps) if back else sum(steps) + rng.randint(1, 3)
    text = f"Always face forward. Take {steps[0]} steps forward. Take {steps[1]} steps forward. Take {final} steps backward."
    return {"input": f"If you follow these instructions, do you return to the starting point? {text}\nOptions:\n- Yes\n- No", "target": "Yes" if back else "No"}


def bbh_object_counting(rng, i):
    counts = {fruit: rng.randint(1, 3) for fruit in rng.sample(["apple", "banana", "plum", "peach", "orange", "grape"], 3)}
    items = ", ".join(f"{_word(c)} {f}{'s' if c > 1 else ''}" for f, c in counts.items())
    return {"input": f"I have {items}. How many fruits do I have?", "target": str(sum(counts.values()))}


def bbh_penguins_in_a_table(rng, i):
    ages = {name: rng.randint(3, 10) for name in ["Louis", "Bernard", "Vincent", "Gwen", "James"]}
    table = "\n".join(f"{n}, {a}, {rng.randint(50, 90)}, {rng.randint(10, 20)}" for n, a in ages.items())
    limit = rng.randint(4, 8)
    count = sum(a > limit for a in ages.values())
    right = str(count)
    wrong = [str(c) for c in range(6) if c != count][:4]
    return _lettered(rng, f"Here is a table where the first line is a header and each subsequent line is a penguin:  name, age, height (cm), weight (kg)\n{table}\nHow many penguins are more than {limit} years old?", right, wrong)


def bbh_reasoning_about_colored_objects(rng, i):
    things = rng.sample(["pen", "cup", "notebook", "scarf", "key", "plate"], 3)
    colors = rng.sample(COLORS, 3)
    scene = ", ".join(f"a {c} {t}" for c, t in zip(colors, things, strict=True))
    asked = rng.randrange(3)
    return {"input": f"On the desk, I see {scene}. What is the color of the {things[asked]}?\n{_options(COLORS)}",
            "target": f"({LETTERS[COLORS.index(colors[asked])]})"}


def bbh_ruin_names(rng, i):
    name, funny, dull = [("star wars", "star jars", ["star wart s", "stair wars", "star wrs", "sta wars", "star warz"]),
                         ("the beatles", "the beagles", ["the betles", "tthe beatles", "the beatle s", "thx beatles", "the beatls"]),
                         ("jurassic park", "jurassic pork", ["jurasic park", "jurassic prk", "jurassicc park", "juraslc park", "jurassic parx"])][i]
    return _lettered(rng, f"Which of the following is a humorous edit of this artist or movie name: '{name}'?", funny, dull)


def bbh_salient_translation_error_detection(rng, i):
    source, translation, kind = [("Der Hund hat vier Beine.", "The dog has three legs.", "Numerical Values"),
                                 ("Das Haus ist groß.", "The house is not big.", "Negation or Antonyms"),
                                 ("Anna wohnt in Berlin.", "Anna lives in Munich.", "Named Entities")][i]
    kinds = ["Modifiers or Adjectives", "Numerical Values", "Negation or Antonyms", "Named Entities", "Dropped Content", "Facts"]
    return {"input": f"The following translations from German to English contain a particular error. Identify the error.\nSource: {source}\nTranslation: {translation}\nThe translation contains an error pertaining to\n{_options(kinds)}",
            "target": f"({LETTERS[kinds.index(kind)]})"}


def bbh_snarks(rng, i):
    sarcastic, sincere = [("Oh great, another flat tire. Just what I needed today.", "Oh no, another flat tire. I hope I can fix it quickly."),
                          ("Wonderful, the printer jammed again right before the deadline. Love that for me.", "Unfortunately, the printer jammed again right before the deadline."),
                          ("Sure, skipping sleep before the exam is a brilliant plan.", "Getting enough sleep before the exam is a good plan.")][i]
    choices = [sarcastic, sincere] if i % 2 == 0 else [sincere, sarcastic]
    return {"input": f"Which statement is sarcastic?\n{_options(choices)}", "target": f"({LETTERS[choices.index(sarcastic)]})"}


def bbh_sports_understanding(rng, i):
    sentence, plausible = [("The goalkeeper caught the ball with both hands.", True),
                           ("The tennis player hit a home run over the net.", False),
                           ("The swimmer finished the race in the pool's last lane.", True)][i]
    return {"input": f"Is the following sentence plausible? \"{sentence}\"", "target": "yes" if plausible else "no"}


def bbh_temporal_sequences(rng, i):
    name = NAMES[i]
    slots = ["6am to 9am", "9am to 12pm", "12pm to 3pm", "3pm to 6pm"]
    free = rng.randrange(4)
    busy = [slot for k, slot in enumerate(slots) if k != free]
    seen = "\n".join(f"{name} was seen at the {place} from {slot}." for place, slot in zip(["office", "gym", "cafe"], busy, strict=True))
    return {"input": f"Today, {name} went to the museum. Between what times could they have gone?\nWe know that:\n{name} woke up at 6am.\n{seen}\nThe museum was closed after 6pm.\n{_options(slots)}",
            "target": f"({LETTERS[free]})"}


def bbh_tracking_shuffled_objects(n):
    def make(rng, i):
        people, balls = NAMES[:n], rng.sample(COLORS, n)
        holding = dict(zip(people, balls, strict=True))
        swaps = [rng.sample(people, 2) for _ in range(3)]
        for a, b in swaps:
            holding[a], holding[b] = holding[b], holding[a]
        start = ", ".join(f"{p} has a {b} ball" for p, b in zip(people, balls, strict=True))
        story = " Then, ".join(f"{a} and {b} swap balls" for a, b in swaps)
        asked = rng.choice(people)
        choices = [f"{b} ball" for b in balls]
        return {"input": f"{', '.join(people)} are playing a game. At the start of the game, they are each holding a ball: {start}. As the game progresses, pairs of players trade balls. First, {story}. At the end of the game, {asked} has the\n{_options(choices)}",
                "target": f"({LETTERS[balls.index(holding[asked])]})"}
    return make


def bbh_web_of_lies(rng, i):
    truthful = rng.random() < 0.5
    statements, current = [f"{NAMES[0]} {'tells the truth' if truthful else 'lies'}."], truthful
    for k in range(1, 4):
        says_truth = rng.random() < 0.5
        statements.append(f"{NAMES[k]} says {NAMES[k - 1]} {'tells the truth' if says_truth else 'lies'}.")
        current = says_truth == current
    return {"input": f"Question: {' '.join(statements)} Does {NAMES[3]} tell the truth?", "target": "Yes" if current else "No"}


BBH = {"boolean_expressions": bbh_boolean_expressions, "causal_judgement": bbh_causal_judgement,
       "date_understanding": bbh_date_understanding, "disambiguation_qa": bbh_disambiguation_qa,
       "formal_fallacies": bbh_formal_fallacies, "geometric_shapes": bbh_geometric_shapes, "hyperbaton": bbh_hyperbaton,
       "logical_deduction_five_objects": bbh_logical_deduction(5), "logical_deduction_seven_objects": bbh_logical_deduction(7),
       "logical_deduction_three_objects": bbh_logical_deduction(3), "movie_recommendation": bbh_movie_recommendation,
       "navigate": bbh_navigate, "object_counting": bbh_object_counting, "penguins_in_a_table": bbh_penguins_in_a_table,
       "reasoning_about_colored_objects": bbh_reasoning_about_colored_objects, "ruin_names": bbh_ruin_names,
       "salient_translation_error_detection": bbh_salient_translation_error_detection, "snarks": bbh_snarks,
       "sports_understanding": bbh_sports_understanding, "temporal_sequences": bbh_temporal_sequences,
       "tracking_shuffled_objects_five_objects": bbh_tracking_shuffled_objects(5),
       "tracking_shuffled_objects_seven_objects": bbh_tracking_shuffled_objects(7),
       "tracking_shuffled_objects_three_objects": bbh_tracking_shuffled_objects(3), "web_of_lies": bbh_web_of_lies}


def math_items(rng: random.Random, kind: str, i: int) -> tuple[str, str, str]:
    """(problem, working, answer) for one MATH type."""
    a, b, c = rng.randint(2, 9), rng.randint(2, 20), rng.randint(21, 60)
    if kind == "algebra":
        c = c - (c - b) % a
        return f"Solve for $x$: ${a}x + {b} = {c}$.", f"Subtracting {b} gives ${a}x = {c - b}$, so $x = {(c - b) // a}$.", str((c - b) // a)
    if kind == "counting_and_prob":
        return f"In how many ways can {a} books be chosen from a shelf of {a + 3} books?", f"This is $\\binom{{{a + 3}}}{{{a}}} = {math.comb(a + 3, a)}$.", str(math.comb(a + 3, a))
    if kind == "geometry":
        return f"A right triangle has legs of length {2 * a} and {2 * b}. What is its area?", f"The area is $\\frac{{1}}{{2}} \\cdot {2 * a} \\cdot {2 * b} = {2 * a * b}$.", str(2 * a * b)
    if kind == "intermediate_algebra":
        return f"What is the sum of the roots of $x^2 - {a + b}x + {a * b} = 0$?", f"By Vieta's formulas the sum of the roots is ${a + b}$.", str(a + b)
    if kind == "num_theory":
        return f"What is the remainder when ${c * b + a}$ is divided by ${b}$?", f"${c * b + a} = {(c * b + a) // b} \\cdot {b} + {(c * b + a) % b}$, so the remainder is ${(c * b + a) % b}$.", str((c * b + a) % b)
    if kind == "prealgebra":
        return f"What is ${a} \\cdot {b} - {c}$?", f"${a} \\cdot {b} = {a * b}$ and ${a * b} - {c} = {a * b - c}$.", str(a * b - c)
    return f"Compute $\\det \\begin{{pmatrix}} {a} & {b} \\\\ {c} & {a} \\end{{pmatrix}}$.", f"The determinant is ${a} \\cdot {a} - {b} \\cdot {c} = {a * a - b * c}$.", str(a * a - b * c)


def math_rows(rng: random.Random, kind: str, count: int) -> list[dict]:
    """MATH-lighteval schema: problem, level, type, solution with a boxed answer; some below level 5."""
    rows = []
    for i in range(count):
        problem, working, answer = math_items(rng, kind, i)
        level = "Level 3" if i % 4 == 3 else "Level 5"  # the benchmark keeps only level 5: exercise its filter
        rows.append({"problem": problem, "level": level, "type": kind.replace("_", " ").title(),
                     "solution": f"{working} The answer is $\\boxed{{{answer}}}$."})
    return rows


def gpqa_rows(rng: random.Random, subset: str, count: int) -> list[dict]:
    """GPQA schema: Question, Correct Answer, Incorrect Answer 1-3 (plus metadata columns)."""
    rows = []
    for i in range(count):
        d, t = rng.randint(2, 9) * 10, rng.randint(2, 5)
        question, right, wrong = [
            (f"A cart travels {d * t} m in {t} s at constant speed. What is its speed?", f"{d} m/s", [f"{d * t * t} m/s", f"{d + t} m/s", f"{d // 2} m/s"]),
            (f"A {t} kg mass accelerates at {d // 10} m/s^2. What net force acts on it?", f"{t * d // 10} N", [f"{t + d // 10} N", f"{d // 10} N", f"{t * d} N"]),
            (f"How many moles are in {t * 18} g of water (18 g/mol)?", f"{t} mol", [f"{t * 2} mol", f"{t * 18} mol", f"{t + 1} mol"]),
            (f"A resistor of {t} ohms carries {d // 10} A. What is the voltage across it?", f"{t * d // 10} V", [f"{t + d // 10} V", f"{d} V", f"{t * d // 5 + 1} V"]),
        ][i % 4]
        rows.append({"Question": question, "Correct Answer": right, "Incorrect Answer 1": wrong[0], "Incorrect Answer 2": wrong[1],
                     "Incorrect Answer 3": wrong[2], "Subdomain": "Physics" if i % 4 != 2 else "Chemistry",
                     "Record ID": f"paft-{subset}-{i}"})
    return rows


def musr_rows(rng: random.Random, kind: str, count: int) -> list[dict]:
    """MuSR schema: narrative, question, choices (a Python list literal, as upstream), answer_index, answer_choice."""
    rows = []
    for _ in range(count):
        people = rng.sample(NAMES, 3)
        if kind == "murder_mysteries":
            killer, other = people[:2]
            narrative = f"The vase was smashed at midnight. {killer} was seen near the vase at midnight with glass on their shoes. {other} was asleep in another town."
            question, choices, answer = "Who is the most likely culprit?", [killer, other], killer
        elif kind == "object_placements":
            places = ["drawer", "shelf", "basket", "table", "box"]
            last = rng.choice(places)
            narrative = f"{people[0]} put the keys on the {places[(places.index(last) + 1) % 5]}. Later, {people[1]} moved the keys to the {last} while {people[0]} watched."
            question, choices, answer = f"Which location is the most likely place {people[0]} would look to find the keys?", places, last
        else:
            narrative = f"{people[0]} loves cooking but cannot drive. {people[1]} is a careful driver. {people[2]} is good at both."
            choices = [f"Cooking: {people[0]}, Driving: {people[1]}", f"Cooking: {people[1]}, Driving: {people[0]}", f"Cooking: {people[0]}, Driving: {people[0]}"]
            question, answer = "Given the story, how would you uniquely allocate each person to make sure both tasks are accomplished efficiently?", choices[0]
        rows.append({"narrative": narrative, "question": question, "choices": repr(choices),
                     "answer_index": choices.index(answer), "answer_choice": answer})
    return rows


IFEVAL = [  # prompt, instruction ids, kwargs per instruction; none needs NLTK's punkt data (no hub offline)
    ("Write a short note to a friend about your weekend without using any commas.", ["punctuation:no_comma"], [{}]),
    ("Describe a sunny day at the beach. Your entire response should be in English and in all lowercase letters.", ["change_case:english_lowercase"], [{}]),
    ("Write a slogan for a bakery. Your entire response should be in English and in all capital letters.", ["change_case:english_capital"], [{}]),
    ("Write a poem about rain. Include a title wrapped in double angular brackets, such as <<title>>.", ["detectable_format:title"], [{}]),
    ("Explain how plants grow. Include the keywords sunlight and water.", ["keywords:existence"], [{"keywords": ["sunlight", "water"]}]),
    ("Give advice for a job interview. End your response with the exact phrase Is there anything else I can help with?", ["startend:end_checker"], [{"end_phrase": "Is there anything else I can help with?"}]),
    ("Describe your favourite city in at least 40 words.", ["length_constraints:number_words"], [{"relation": "at least", "num_words": 40}]),
    ("List reasons to learn to swim. Your answer must contain exactly 3 bullet points in markdown format, such as:\n* point one", ["detectable_format:number_bullet_lists"], [{"num_bullets": 3}]),
    ("Wrap your entire response in double quotation marks. Tell me about cats.", ["startend:quotation"], [{}]),
    ("Write an email inviting a colleague to lunch. At the end, add a postscript starting with P.S.", ["detectable_content:postscript"], [{"postscript_marker": "P.S."}]),
    ("Describe a forest without using the words tree or green.", ["keywords:forbidden_words"], [{"forbidden_words": ["tree", "green"]}]),
    ("Write a two-line poem about the moon in all lowercase letters and without any commas.", ["change_case:english_lowercase", "punctuation:no_comma"], [{}, {}]),
]
IFEVAL_KWARGS = ["keywords", "end_phrase", "relation", "num_words", "num_bullets", "postscript_marker", "forbidden_words"]


def ifeval_rows() -> list[dict]:
    """IFEval schema: key, prompt, instruction_id_list, kwargs (every key present, null where unused)."""
    return [{"key": 1000 + i, "prompt": prompt, "instruction_id_list": ids,
             "kwargs": [{k: kw.get(k) for k in IFEVAL_KWARGS} for kw in kwargs]}
            for i, (prompt, ids, kwargs) in enumerate(IFEVAL)]


def mmlu_pro_rows(rng: random.Random, count: int, split: str) -> list[dict]:
    """MMLU-Pro schema: question, options (10), answer (letter), answer_index, cot_content, category, src."""
    rows = []
    for i in range(count):
        a, b = rng.randint(11, 49), rng.randint(3, 9)
        right = a * b
        options = _shuffled(rng, [str(right), *[str(right + d) for d in rng.sample([-20, -10, -3, -2, -1, 1, 2, 3, 10, 20], 9)]])
        k = options.index(str(right))
        rows.append({"question_id": i, "question": f"A warehouse holds {b} crates with {a} items each. How many items are in the warehouse?",
                     "options": options, "answer": LETTERS[k], "answer_index": k,
                     "cot_content": f"A: Let's think step by step. {a} * {b} = {right}. The answer is ({LETTERS[k]})." if split == "validation" else "",
                     "category": "math", "src": f"paft-{split}"})
    return rows


# ---------------------------------------------------------------- helpers and main


def _rng(name: str) -> random.Random:
    """One random stream per twin, so adding or changing one never shifts another."""
    return random.Random(f"{SEED}:{name}")


def _interleave(groups: list[list]) -> list:
    """Round-robin over `groups`, so the first N items (a `limit`) span as many groups as N allows."""
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]


def _shuffled(rng: random.Random, items: list) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


def _ordinal(k: int) -> str:
    return ["first", "second", "third", "fourth", "fifth", "sixth", "seventh"][k]


def _word(n: int) -> str:
    return ["zero", "one", "two", "three", "four", "five", "six", "seven"][n]


def twins() -> dict[str, dict[str, list[dict]]]:
    """Every offline twin: lm-eval task name → split → rows."""
    out = {"arc_challenge": arc(_rng("arc")), "hellaswag": hellaswag(_rng("hellaswag")),
           "truthfulqa_mc2": {"validation": truthfulqa(_rng("truthfulqa"))},
           "winogrande": winogrande(_rng("winogrande")), "gsm8k": gsm8k(_rng("gsm8k")),
           **mmlu(_rng("mmlu")),
           "leaderboard_ifeval": {"train": ifeval_rows()},
           "leaderboard_mmlu_pro": {s: mmlu_pro_rows(_rng(f"mmlu_pro-{s}"), n, s) for s, n in (("validation", 5), ("test", 20))}}
    for name, make in BBH.items():
        gen = _rng(f"bbh-{name}")
        out[f"leaderboard_bbh_{name}"] = {"test": [make(gen, i) for i in range(3)]}
    for kind in ("algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory", "prealgebra", "precalculus"):
        out[f"leaderboard_math_{kind}_hard"] = {"train": math_rows(_rng(f"math-{kind}-train"), kind, 2),
                                                "test": math_rows(_rng(f"math-{kind}-test"), kind, 8)}
    for subset in ("diamond", "extended", "main"):
        out[f"leaderboard_gpqa_{subset}"] = {"train": gpqa_rows(_rng(f"gpqa-{subset}"), subset, 4)}
    musr = {kind: musr_rows(_rng(f"musr-{kind}"), kind, 4) for kind in ("murder_mysteries", "object_placements", "team_allocation")}
    for kind in musr:  # upstream names its splits after the subtasks; each subtask reads its own
        out[f"leaderboard_musr_{kind}"] = {kind: musr[kind]}
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8, in the upstream field order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main(out: Path = OUT) -> None:
    """Write every twin into `out` (default data/eval/)."""
    for task, splits in twins().items():
        for split, rows in splits.items():
            write_jsonl(out / task / f"{split}.jsonl", rows)


if __name__ == "__main__":
    main()
