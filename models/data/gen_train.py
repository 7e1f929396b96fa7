"""Generates models/data/train.jsonl: our own labelled training traffic (deterministic, seed 1234).

Items are composed from instruction templates x content pools (documents, code, stack traces, topics,
problems) x wrappers (system prompts of typical apps, multi-turn histories). The held-out split is NOT
made here: it is written by hand in heldout_src.py with its own phrasings and content, and checked against
this file by models/neardup.py.

    python models/data/gen_train.py   # rewrites models/data/train.jsonl
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

R = random.Random(1234)
OUT = Path(__file__).with_name("train.jsonl")
PER_LABEL = 750


def pick(xs):
    return R.choice(xs)


TPL = [""]  # id of the template the current item came from ("src" field; used for grouped CV when tuning)


def use(forms, tag):
    i = R.randrange(len(forms))
    TPL[0] = f"{tag}/{i}"
    return forms[i]()


# --------------------------------------------------------------------------------------------- content pools
DOCS = [
    "The city council voted 7-2 on Tuesday to approve a new bike lane network covering 40 kilometres of downtown streets. "
    "Construction starts in March and is expected to cost 12 million dollars, funded partly by a federal grant. Opponents "
    "argued that the lanes would remove nearly 600 parking spaces and hurt small retailers, while supporters pointed to a "
    "30 percent rise in cycling commuters since 2021.",
    "Q3 results: revenue grew 18% year over year to $4.2M, driven by the enterprise tier. Gross margin slipped from 71% to "
    "68% because of higher cloud costs. Churn fell to 2.1% monthly. The team plans to hire six engineers and one "
    "solutions architect before the end of Q4, and to renegotiate the hosting contract in January.",
    "Meeting notes, 14 May. Attendees: Priya, Tom, Alejandro, Mei. Priya reported that the mobile release slipped a week "
    "because of a crash on Android 12. Tom will own the hotfix and ship by Friday. Alejandro raised the question of "
    "dropping iOS 15 support; decision postponed until usage numbers are in. Mei will draft the Q3 roadmap by 28 May.",
    "Hi team, a quick update on the warehouse migration. We moved 80% of the inventory to the new site in Leeds last "
    "weekend. The remaining pallets go on June 3rd. Please note that order pick-ups from the old address stop on June 1st. "
    "If a customer asks, direct them to the new address: Unit 4, Riverside Park, Leeds LS10 1AB. Thanks, Sarah",
    "Researchers at a university in Denmark trained a small language model on 2 billion tokens of clinical notes and found "
    "that it matched a much larger general model on medication extraction, while running on a single laptop GPU. The "
    "authors caution that the notes came from only three hospitals and that results may not transfer to other regions.",
    "Customer ticket #48213: I was charged twice for my annual subscription on 2024-02-11 (two payments of 119 EUR on my "
    "Visa ending 4421). I contacted support by chat but the agent closed the conversation. I want a refund for the "
    "duplicate charge and confirmation by email at j.moreau@example.fr. This is really frustrating.",
    "Release 2.8.0 adds streaming support for the export API, a dark mode for the dashboard and SAML single sign-on for "
    "enterprise accounts. It deprecates the v1 webhooks, which will be removed in 3.0. Bug fixes: CSV exports no longer "
    "drop the last row; timezone handling in scheduled reports is fixed; memory use of the indexer is down by 35%.",
    "Section 9.2 Termination. Either party may terminate this Agreement with ninety (90) days written notice. The Supplier "
    "may terminate immediately if the Customer fails to pay any undisputed invoice within thirty (30) days of its due date. "
    "Upon termination, the Customer shall pay all fees accrued up to the termination date, and each party shall return or "
    "destroy the other party's confidential information.",
    "The Aurora X2 is a lightweight 14-inch laptop weighing 1.2 kg, with a 12-core processor, 32 GB of RAM and a 1 TB SSD. "
    "Battery life is rated at 17 hours. It ships with two Thunderbolt 4 ports, a headphone jack and Wi-Fi 7. The price "
    "starts at 1,499 dollars, and it is available in silver and graphite from October 10.",
    "Dear Mr. Okafor, thank you for your application for the position of Senior Data Analyst. We were impressed by your "
    "experience at Lumen Health. We would like to invite you to a second interview on Thursday, 12 September at 10:30 at "
    "our Berlin office, Friedrichstrasse 68. Please confirm by replying to this email. Kind regards, Hannah Vogel, HR",
    "Photosynthesis converts light energy into chemical energy. In the light-dependent reactions, which take place in the "
    "thylakoid membranes, water is split and ATP and NADPH are produced. The Calvin cycle in the stroma then uses ATP and "
    "NADPH to fix carbon dioxide into sugars. Factors such as light intensity, CO2 concentration and temperature limit the rate.",
    "Incident report: on 3 April between 09:12 and 09:47 UTC, about 22% of API requests in eu-west failed with 503 errors. "
    "The root cause was a misconfigured connection pool limit deployed at 09:05. The change was rolled back at 09:40. "
    "Follow-ups: add a canary stage for config changes, alert on pool saturation, and document the limit in the runbook.",
    "Our grandmother's apple cake: mix 200 g flour, 150 g sugar, 3 eggs, 100 g melted butter and a teaspoon of baking "
    "powder. Slice four apples thinly and fold them in. Bake at 180 degrees for 45 minutes. Let it cool for twenty "
    "minutes before serving, ideally with whipped cream.",
    "The survey of 1,200 remote workers found that 64% would accept a lower salary to keep working from home, while 21% "
    "said they felt isolated. Respondents aged 25 to 34 were most likely to want a hybrid arrangement. The study was "
    "conducted online in January and has a margin of error of plus or minus 3 points.",
    "Patient: female, 54. Presented with chest pain radiating to the left arm, onset 2 hours ago. BP 150/95, HR 102. ECG "
    "shows ST elevation in leads II, III, aVF. Administered aspirin 300 mg. Transferred to cath lab at 14:20. History of "
    "type 2 diabetes, on metformin 500 mg twice daily.",
    "Shipping policy: orders over 50 euros ship free within the EU. Standard delivery takes 3 to 5 business days; express "
    "delivery (9.90 euros) arrives next day if ordered before 2 pm. Returns are accepted within 30 days in original "
    "packaging. Refunds are issued to the original payment method within 10 days of receiving the return.",
    "The volcano on the island erupted early Sunday, sending an ash column 8 kilometres into the air. Authorities "
    "evacuated 3,000 residents from villages on the eastern slope and closed the airport until further notice. No "
    "injuries have been reported. Seismologists say activity could continue for several weeks.",
    "Product review: I bought the Breeze 300 air purifier two months ago. It is quiet on the lowest setting and the app "
    "is easy to use, but the filters are expensive (45 dollars each) and need changing every three months. The air "
    "quality sensor seems accurate. Overall 4 out of 5, would recommend for bedrooms but not large living rooms.",
    "Abstract: We propose a method for compressing transformer attention caches by clustering key vectors per head. On "
    "long-context benchmarks, our approach reduces memory by 4.3x with less than 1 point of accuracy loss. We release "
    "code and checkpoints. Limitations include extra latency during cache construction for very short prompts.",
    "From: ops@northwind.io. Subject: Maintenance window. The primary database cluster will be upgraded to version 16 "
    "on Saturday 21 June from 01:00 to 03:00 CET. Writes will be unavailable for up to 15 minutes. Read replicas stay "
    "online. Contact Jonas Lind (+46 70 123 45 67) for questions.",
    "The novel follows Ines, a lighthouse keeper on a remote Atlantic island, during the winter of 1962. When a "
    "shipwrecked sailor washes ashore with no memory, Ines must decide whether to report him to the authorities or keep "
    "him hidden. The book explores loneliness, trust and the weight of small decisions.",
    "Board minutes: the board approved the 2025 budget of 8.4 million, with 40% allocated to R&D. The CFO warned that "
    "currency fluctuations could cut revenue by up to 5%. The board also approved the appointment of Dr. Lena Park as "
    "Chief Medical Officer, effective 1 March. Next meeting: 19 December.",
]

LONG_FILLER = [
    "In addition, the team reviewed several options and documented the trade-offs in the appendix.",
    "Stakeholders were informed by email and the decision log was updated accordingly.",
    "Further details are available in the shared drive under the project folder.",
    "A follow-up session will be scheduled once the remaining data has been collected.",
    "Several participants noted that the timeline is tight but achievable with additional resources.",
    "The figures above are preliminary and may be revised after the audit.",
    "Feedback from early users has been mostly positive, although some requested more documentation.",
    "The previous version of this document is archived and should no longer be used as a reference.",
]

CODE = [
    ("python", "def average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n"),
    ("python", "import requests\n\ndef fetch_user(uid):\n    r = requests.get(f'https://api.example.com/users/{uid}')\n    data = r.json()\n    return data['name'], data['email']\n"),
    ("python", "class Cache:\n    def __init__(self):\n        self.store = {}\n    def get(self, k):\n        return self.store[k]\n    def set(self, k, v):\n        self.store[k] = v\n"),
    ("javascript", "function debounce(fn, ms) {\n  let t;\n  return (...args) => {\n    clearTimeout(t);\n    t = setTimeout(() => fn(...args), ms);\n  };\n}\n"),
    ("javascript", "app.get('/orders/:id', async (req, res) => {\n  const order = await db.query('SELECT * FROM orders WHERE id = ' + req.params.id);\n  res.json(order);\n});\n"),
    ("typescript", "export async function retry<T>(f: () => Promise<T>, n = 3): Promise<T> {\n  for (let i = 0; i < n; i++) {\n    try { return await f(); } catch (e) { if (i === n - 1) throw e; }\n  }\n  throw new Error('unreachable');\n}\n"),
    ("rust", "fn parse_port(s: &str) -> u16 {\n    s.trim().parse().unwrap()\n}\n\nfn main() {\n    let p = parse_port(\"80a\");\n    println!(\"{}\", p);\n}\n"),
    ("rust", "pub struct Stack<T> { items: Vec<T> }\nimpl<T> Stack<T> {\n    pub fn push(&mut self, t: T) { self.items.push(t) }\n    pub fn pop(&mut self) -> Option<T> { self.items.pop() }\n}\n"),
    ("go", "func sum(nums []int) int {\n\ts := 0\n\tfor i := 0; i <= len(nums); i++ {\n\t\ts += nums[i]\n\t}\n\treturn s\n}\n"),
    ("go", "func handler(w http.ResponseWriter, r *http.Request) {\n\tbody, _ := io.ReadAll(r.Body)\n\tvar req Request\n\tjson.Unmarshal(body, &req)\n\tfmt.Fprintf(w, \"hello %s\", req.Name)\n}\n"),
    ("sql", "SELECT c.name, SUM(o.total)\nFROM customers c JOIN orders o ON o.customer_id = c.id\nWHERE o.created_at > '2024-01-01'\nGROUP BY c.name\nORDER BY 2 DESC;\n"),
    ("java", "public int fib(int n) {\n    if (n <= 1) return n;\n    return fib(n - 1) + fib(n - 2);\n}\n"),
    ("bash", "for f in $(ls *.log); do\n  gzip $f\n  mv $f.gz archive/\ndone\n"),
    ("c", "char *copy(const char *s) {\n    char *d = malloc(strlen(s));\n    strcpy(d, s);\n    return d;\n}\n"),
    ("python", "@app.route('/upload', methods=['POST'])\ndef upload():\n    f = request.files['file']\n    f.save('/tmp/' + f.filename)\n    return 'ok'\n"),
]

TRACES = [
    "Traceback (most recent call last):\n  File \"app/main.py\", line 42, in <module>\n    run()\n  File \"app/main.py\", line 37, in run\n    cfg = load_config(path)\n  File \"app/config.py\", line 12, in load_config\n    return yaml.safe_load(open(path))['server']\nKeyError: 'server'",
    "thread 'main' panicked at src/main.rs:14:31:\ncalled `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
    "TypeError: Cannot read properties of undefined (reading 'map')\n    at ProductList (ProductList.jsx:18:23)\n    at renderWithHooks (react-dom.development.js:14985:18)\n    at mountIndeterminateComponent (react-dom.development.js:17811:13)",
    "panic: runtime error: index out of range [5] with length 5\n\ngoroutine 1 [running]:\nmain.sum(...)\n\t/home/dev/sum.go:6\nmain.main()\n\t/home/dev/sum.go:12 +0x1d\nexit status 2",
    "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null\n\tat com.acme.UserService.validate(UserService.java:57)\n\tat com.acme.UserController.create(UserController.java:31)",
    "error[E0502]: cannot borrow `v` as mutable because it is also borrowed as immutable\n --> src/lib.rs:8:5\n  |\n7 |     let first = &v[0];\n  |                  - immutable borrow occurs here\n8 |     v.push(4);\n  |     ^^^^^^^^^ mutable borrow occurs here",
    "psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint \"users_email_key\"\nDETAIL:  Key (email)=(ana@example.com) already exists.",
    "ModuleNotFoundError: No module named 'numpy.core._multiarray_umath'\nImportError: numpy.core.multiarray failed to import",
    "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree\nnpm ERR! Found: react@18.2.0\nnpm ERR! Could not resolve dependency: peer react@\"^17.0.0\" from react-beautiful-dnd@13.1.1",
    "Segmentation fault (core dumped)\n==1234== Invalid write of size 1\n==1234==    at 0x4C2E1A0: strcpy (vg_replace_strmem.c:458)\n==1234==    by 0x400596: copy (copy.c:5)",
]

TOPICS = ["a lighthouse keeper", "a robot learning to cook", "the first day of autumn", "a lost umbrella",
          "two rival bakers", "a city that never sleeps", "a dragon afraid of fire", "the last bookstore on earth",
          "a time-traveling cat", "the ocean at night", "a retired astronaut", "a haunted vending machine",
          "friendship between a fox and a crow", "a rainy Monday", "coffee", "a software bug that became sentient",
          "a village festival", "grandmother's garden", "a train journey through the mountains", "winter solstice",
          "a detective who can smell lies", "the moon's diary", "a startup pitch gone wrong", "a mountain hut",
          "an old violin", "a kid's first bike", "climate change", "moving to a new city", "a ghost in the office",
          "a wedding toast for my sister", "a pirate who gets seasick", "the smell of rain", "a chess grandmaster's last game"]

LANGS = ["French", "German", "Spanish", "Italian", "Portuguese", "Japanese", "Chinese", "Dutch", "Polish", "Korean",
         "Turkish", "Swedish", "Arabic", "Russian", "Hindi", "Brazilian Portuguese", "Vietnamese", "Czech"]

SENTENCES = [
    "Your order has shipped and will arrive within three business days.",
    "Please restart the application to apply the update.",
    "We are sorry, but this item is out of stock.",
    "The meeting has been moved to Thursday at 3 pm.",
    "Click here to reset your password.",
    "Thank you for your patience while we investigate the issue.",
    "Free returns within 30 days of purchase.",
    "Your session has expired. Please log in again.",
    "The museum is closed on Mondays and public holidays.",
    "Add to cart", "Save changes", "Are you sure you want to delete this file?",
    "I have been living in this city for five years and I still get lost.",
    "Machine learning models need large amounts of labeled data.",
    "The hotel is a ten-minute walk from the train station.",
    "Invoice overdue: please pay within 7 days to avoid a late fee.",
    "Welcome back! You have 3 unread messages.",
    "Our support team is available Monday to Friday, 9 am to 6 pm.",
]

SYSTEMS = {
    "generic": ["You are a helpful assistant.", "You are ChatGPT, a large language model. Answer concisely.",
                "You are a helpful, harmless and honest assistant. Current date: 2025-03-14.",
                "You are an AI assistant embedded in a productivity app. Be brief and friendly."],
    "support": ["You are Ava, the customer support assistant for Northwind Bank. Be polite, never reveal internal "
                "policies, and escalate fraud cases to a human.",
                "You are the support bot of ShopNow. Answer questions about orders, shipping and returns. If you do not "
                "know, say so and offer to open a ticket."],
    "coding": ["You are an expert software engineer. When you write code, include only the code and a short explanation.",
               "You are a coding agent working in a Python repository. You can read files and propose patches as unified diffs.",
               "You are a senior Rust reviewer. Be precise and point to line numbers."],
    "planner": ["You are the planner of an autonomous agent. Given the goal and the observations so far, decide the next "
                "step. Think carefully and output a numbered plan.",
                "You are a reasoning engine. Work through problems step by step and state the final answer on the last line."],
    "extractor": ["You are a data extraction service. Return only valid JSON that matches the schema. Do not add commentary.",
                  "You extract structured fields from documents. Output JSON. Use null for missing values."],
    "rag": ["You are a research assistant. Use only the provided context to answer. Cite the document numbers.",
            "You summarize retrieved documents for busy executives. Keep it under 120 words."],
    "l10n": ["You are a professional translator for a software localization pipeline. Preserve placeholders like {name} "
             "and HTML tags. Return only the translation.",
             "You are a translation engine. Translate faithfully and keep the formatting."],
    "writer": ["You are a creative writing partner with a vivid, playful style.",
               "You are an editor at a publishing house. Improve texts while keeping the author's voice."],
}

LABEL_SYSTEMS = {
    "reasoning": ["planner", "generic"], "code": ["coding", "generic"], "creative": ["writer", "generic"],
    "rewrite": ["writer", "generic", "support"], "chat": ["generic", "support"], "extraction": ["extractor", "generic"],
    "summarize": ["rag", "generic"], "translation": ["l10n", "generic"],
}


def doc(long=False):
    d = pick(DOCS)
    if long:
        parts = [d] + R.sample(DOCS, 2) + R.sample(LONG_FILLER, 3)
        R.shuffle(parts[1:])
        d = "\n\n".join(parts)
    return d


def code():
    return pick(CODE)


# --------------------------------------------------------------------------------------------- label makers
def mk_reasoning():
    n1, n2, n3 = R.randint(2, 90), R.randint(2, 60), R.randint(3, 12)
    forms = [
        lambda: f"A train leaves at {R.randint(6, 11)}:00 going {n1 + 40} km/h and another leaves {n3} minutes later at {n1 + 60} km/h on the same track. When does the second catch up? Show your reasoning.",
        lambda: f"If {n3} workers build a wall in {n2} hours, how long do {n3 + 3} workers take? Explain step by step.",
        lambda: f"A shirt costs ${n1 + 10} after a {R.choice([10, 15, 20, 25, 30])}% discount. What was the original price?",
        lambda: f"Alice is {n3} years older than Bob. In {n2 % 10 + 2} years the sum of their ages will be {n1 + 40}. How old is Bob now?",
        lambda: f"Is {R.choice([91, 97, 221, 323, 437, 1001, 7919, 561])} a prime number? Prove your answer.",
        lambda: "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may draw one fruit from one box. How do you relabel all boxes?",
        lambda: "All bloops are razzies and some razzies are lazzies. Can we conclude that some bloops are lazzies? Explain.",
        lambda: f"Solve for x: {n3}x + {n1} = {n2 * 3 + n1}. Then check the solution.",
        lambda: f"What is the probability of getting at least two heads in {n3 % 5 + 3} fair coin tosses? Work it out.",
        lambda: f"We have a budget of {n1 * 1000} euros and must choose between hiring one senior engineer or two juniors for a {n3}-month project with a hard deadline. Weigh the trade-offs and recommend one.",
        lambda: f"Goal: {pick(GOALS)}. Break this down into concrete steps, identify dependencies between them and the riskiest step.",
        lambda: f"Observation: {pick(OBS)}. Given the goal '{pick(GOALS)}', what should the agent do next and why?",
        lambda: "Think step by step: a bat and a ball cost 1.10 in total. The bat costs 1.00 more than the ball. How much does the ball cost?",
        lambda: f"Estimate how many piano tuners work in a city of {n1 / 10 + 1:.1f} million people. State your assumptions.",
        lambda: f"Our API's p99 latency rose from {n2 + 100} ms to {n2 + 400} ms after we doubled traffic, while CPU stays at 40%. What are the most likely causes and how would you narrow it down?",
        lambda: f"Compare Postgres and DynamoDB for a multi-tenant SaaS with {n1}k tenants and spiky writes. Reason about cost, consistency and operations, then decide.",
        lambda: "Prove that the sum of the first n odd numbers equals n squared.",
        lambda: f"A snail climbs {n3} metres up a {n3 * 3 + 2}-metre well each day and slides back {n3 - 1} metres each night. On which day does it get out?",
        lambda: "Five people sit in a row. Ann is left of Ben, Cara is not at either end, Dan sits next to Ed, and Ben is in the middle. List every valid seating.",
        lambda: f"Given these tasks with durations A={n3}h, B={n2 % 9 + 1}h (after A), C=3h (after A), D=2h (after B and C), what is the critical path and the minimum total time?",
        lambda: "Should a small bakery invest in a delivery app or in a second oven first? It sells out every day by noon, and 20% of customers ask about delivery. Analyse and decide.",
        lambda: f"A tank fills in {n3} hours with pipe A and {n3 + 2} hours with pipe B. How long with both open? Reason carefully.",
        lambda: "Which is larger, 2^100 or 10^30? Justify without a calculator.",
        lambda: f"Our churn is {n3 % 5 + 2}% per month and we acquire {n1 * 10} customers per month. What steady-state customer count do we converge to? Derive it.",
        lambda: "Find the flaw in this argument: every time I wash my car it rains, so washing my car causes rain.",
        lambda: f"You are at step {n3 % 6 + 2} of the plan. The previous tool call returned an empty result. Re-plan: list the remaining steps and decide whether to retry, change the query, or ask the user.",
        lambda: "If it takes 5 machines 5 minutes to make 5 widgets, how long would it take 100 machines to make 100 widgets? Explain the logic.",
        lambda: f"Rank these three options by expected value: a sure {n1 * 10} dollars, a 50% chance of {n1 * 25} dollars, or a 10% chance of {n1 * 120} dollars. Then discuss risk.",
    ]
    return use(forms, "reasoning")


GOALS = ["book a flight to Lisbon under 300 euros for next weekend", "migrate the user table to a new schema without downtime",
         "find the three cheapest suppliers of recycled paper and compare them", "organise a team offsite for 25 people in May",
         "reduce the monthly cloud bill by 20 percent", "prepare a literature review on battery recycling",
         "fix the flaky integration tests in CI", "launch the product in Germany by Q3", "answer the customer's refund request correctly",
         "write a market analysis for electric scooters in Spain"]
OBS = ["the search tool returned 0 results for 'recycled paper suppliers'", "the flight API timed out twice",
       "the migration dry run reported 14 rows that violate the new constraint", "the user has not replied for 2 days",
       "the test passes locally but fails in CI on the third run", "the budget spreadsheet is missing March"]


def mk_code():
    lang, src = code()
    tr = pick(TRACES)
    forms = [
        lambda: f"Why does this {lang} code fail?\n\n{src}",
        lambda: f"Refactor this function to be more idiomatic {lang}:\n```{lang}\n{src}```",
        lambda: f"Rewrite this function so it handles empty input:\n```{lang}\n{src}```",
        lambda: f"I get this error when I run my script:\n\n{tr}\n\nHow do I fix it?",
        lambda: f"{tr}\n\nwhat's wrong",
        lambda: f"Write a {pick(['Python', 'TypeScript', 'Go', 'Rust', 'Java', 'C#', 'Kotlin'])} function that {pick(CODE_TASKS)}.",
        lambda: f"Write unit tests for this code:\n```{lang}\n{src}```",
        lambda: f"Explain what this code does line by line:\n{src}",
        lambda: f"Review this pull request diff and point out bugs:\n```diff\n- {src.splitlines()[0]}\n+ {src.splitlines()[-1]}\n```",
        lambda: f"Port this {lang} snippet to {pick(['Rust', 'Go', 'Python', 'TypeScript', 'Java'])}:\n{src}",
        lambda: f"Write a SQL query that {pick(SQL_TASKS)}.",
        lambda: f"Give me a regex that {pick(REGEX_TASKS)}.",
        lambda: f"How do I {pick(HOWTO_CODE)}?",
        lambda: f"Is there a security problem in this code?\n{src}",
        lambda: f"Add type hints and docstrings to this:\n{src}",
        lambda: f"Make this faster, it is called a million times per second:\n{src}",
        lambda: f"Task: fix the failing test.\nTest output:\n{tr}\nRelevant file:\n```{lang}\n{src}```\nPropose a patch as a unified diff.",
        lambda: f"Write a bash one-liner that {pick(BASH_TASKS)}.",
        lambda: f"Convert this callback-based code to async/await:\n{src}",
        lambda: f"Write a Dockerfile for a {pick(['FastAPI', 'Express', 'Spring Boot', 'Axum', 'Django'])} app with a multi-stage build.",
        lambda: f"What's the time complexity of this and can it be improved?\n{src}",
        lambda: f"Implement {pick(['an LRU cache', 'a trie', 'a rate limiter (token bucket)', 'binary search', 'a thread-safe queue', 'Dijkstra shortest path', 'a JSON pretty printer'])} in {pick(['Python', 'Go', 'Rust', 'C++', 'TypeScript'])}.",
    ]
    return use(forms, "code")


CODE_TASKS = ["parses ISO 8601 dates and returns None on bad input", "merges two sorted lists", "validates an email address",
              "reads a CSV file and returns the average of a column", "retries an HTTP call with exponential backoff",
              "flattens a nested dictionary with dotted keys", "computes the Levenshtein distance", "checks if a string is a palindrome",
              "deduplicates a list while keeping order", "streams a large file line by line and counts words",
              "converts a Roman numeral to an integer", "paginates results from a REST API"]
SQL_TASKS = ["returns the top 5 customers by revenue in 2024", "finds duplicate emails in the users table",
             "computes a 7-day rolling average of daily signups", "lists products that were never ordered",
             "deletes sessions older than 30 days"]
REGEX_TASKS = ["matches UK postcodes", "extracts all hashtags from a tweet", "validates an IPv4 address",
               "matches dates like 2024-03-01", "captures the domain from a URL"]
HOWTO_CODE = ["undo the last git commit but keep my changes", "center a div with flexbox", "read environment variables in Rust",
              "make a POST request with curl with a JSON body", "set up a Python virtual environment",
              "mock a database call in pytest", "cancel a goroutine after a timeout", "debounce an input in React"]
BASH_TASKS = ["finds the 10 largest files under the current directory", "counts lines of code per file extension",
              "renames all .jpeg files to .jpg", "kills the process listening on port 8080"]


def mk_creative():
    t = pick(TOPICS)
    forms = [
        lambda: f"Write a short story about {t}.",
        lambda: f"Write a haiku about {t}.",
        lambda: f"Compose a poem about {t} in the style of {pick(['Emily Dickinson', 'a sea shanty', 'a limerick', 'Shakespeare', 'a rap verse'])}.",
        lambda: f"Tell me a joke about {t}.",
        lambda: f"Write song lyrics about {t}, with a chorus.",
        lambda: f"Brainstorm 10 names for {pick(NAMEABLE)}.",
        lambda: f"Write the opening paragraph of a fantasy novel featuring {t}.",
        lambda: f"Create a bedtime story for a {R.randint(3, 9)}-year-old about {t}.",
        lambda: f"Write a dialogue between {t} and {pick(TOPICS)}.",
        lambda: f"Come up with a catchy slogan for {pick(NAMEABLE)}.",
        lambda: f"Write a {R.choice([50, 100, 200, 300])}-word flash fiction piece that ends with a twist, about {t}.",
        lambda: f"Invent a board game about {t} and describe its rules in a fun way.",
        lambda: f"Write a product description for {pick(NAMEABLE)} that sounds like a movie trailer.",
        lambda: f"Write a birthday poem for my {pick(['mom', 'best friend', 'boss', 'grandpa', 'wife', 'little brother'])} who loves {pick(['gardening', 'chess', 'hiking', 'jazz', 'baking', 'football'])}.",
        lambda: f"Give me three plot ideas for a mystery novel set in {pick(['Venice', 'a space station', 'a ski resort', '1920s Shanghai', 'a small Texas town'])}.",
        lambda: f"Write a tweet announcing {pick(NAMEABLE)} with a pun.",
        lambda: f"Describe {t} as if you were a noir detective.",
        lambda: f"Write a funny limerick about {t}.",
        lambda: f"Continue this story: 'The door had been locked for forty years, until the morning {t} knocked on it.'",
        lambda: f"Create a character backstory for a D&D {pick(['rogue', 'wizard', 'paladin', 'bard'])} connected to {t}.",
    ]
    return use(forms, "creative")


NAMEABLE = ["a vegan coffee shop", "a project management app", "a dog-walking startup", "a sci-fi podcast",
            "a craft beer brewery", "a kids' coding school", "an indie video game about gardening", "a cybersecurity newsletter",
            "a zero-waste grocery store", "our new noise-cancelling headphones"]


def mk_rewrite():
    d = pick(DOCS + SENTENCES + ROUGH)
    forms = [
        lambda: f"Rewrite this to sound more professional:\n\n{d}",
        lambda: f"Fix the grammar and spelling:\n{pick(ROUGH)}",
        lambda: f"Paraphrase the following paragraph:\n{d}",
        lambda: f"Make this email more polite:\n\n{pick(ROUGH)}",
        lambda: f"Rephrase this in plain English for a non-technical audience:\n{d}",
        lambda: f"Proofread my text and return the corrected version:\n{pick(ROUGH)}",
        lambda: f"Make this more concise without losing any information:\n{d}",
        lambda: f"Change the tone of this message to friendly and casual:\n{d}",
        lambda: f"Rewrite the paragraph below in the passive voice.\n{d}",
        lambda: f"Simplify this text for a 10-year-old reader:\n{d}",
        lambda: f"Polish this LinkedIn post:\n{pick(ROUGH)}",
        lambda: f"Reword this so it doesn't sound rude: \"{pick(ROUGH)}\"",
        lambda: f"Improve the flow of this paragraph:\n\n{d}",
        lambda: f"Expand these bullet points into a well-written paragraph:\n- {pick(SENTENCES)}\n- {pick(SENTENCES)}\n- {pick(SENTENCES)}",
        lambda: f"Rewrite this product blurb so it fits in 160 characters:\n{d}",
        lambda: f"{pick(ROUGH)}\n\ncan you make this sound better",
        lambda: f"Edit this cover letter paragraph to be more confident:\n{pick(ROUGH)}",
        lambda: f"Rewrite in British English spelling:\n{d}",
        lambda: f"Turn this formal notice into a friendly Slack message:\n{d}",
        lambda: f"Rewrite the following sentence in five different ways: {pick(SENTENCES)}",
    ]
    return use(forms, "rewrite")


ROUGH = ["hey i need the report asap, why isnt it done yet??", "their going to the meeting tommorow and we was not informed",
         "We regret to inform u that ur application has been rejected due to reasons.",
         "i think our product is good and people should buy it because it is good and cheap",
         "Pls send me the invoice, I asked 3 times already. Not happy.",
         "me and him has worked on this project since two years and it have many problems",
         "Excited to anounce I started new job at Acme!!! so grateful blessed thank u all",
         "The the system is down again, fix it now or we cancel the contract.",
         "I am writing to complain about the noise of your dog which barks all the night long.",
         "our team done a great job this quarter, revenue is up alot and customers is happy"]


def mk_chat():
    forms = [
        lambda: pick(["hi!", "hello there", "good morning :)", "hey, how's it going?", "yo", "hi, are you a bot?",
                      "thanks, that was helpful!", "haha nice", "ok cool", "bye, talk later", "what's up?", "Good night!"]),
        lambda: f"What's your favourite {pick(['movie', 'book', 'season', 'food', 'color', 'programming language', 'city'])}?",
        lambda: f"I'm feeling {pick(['a bit down', 'really stressed', 'bored', 'happy', 'nervous', 'lonely'])} today{pick(['', ', any thoughts?', '.', '. can we chat?'])}",
        lambda: f"Can you recommend a {pick(['good sci-fi book', 'podcast about history', 'board game for four people', 'movie for tonight', 'hobby to pick up'])}?",
        lambda: f"Who {pick(['painted the Mona Lisa', 'wrote Pride and Prejudice', 'was the first person on the moon', 'invented the telephone'])}?",
        lambda: f"What is the capital of {pick(['Australia', 'Canada', 'Kenya', 'Peru', 'Norway', 'Vietnam'])}?",
        lambda: f"How do I {pick(['reset my password', 'cancel my subscription', 'change my delivery address', 'contact a human agent', 'update my card details', 'track my order'])}?",
        lambda: f"My order {R.randint(10000, 99999)} hasn't arrived yet, where is it?",
        lambda: f"Do you think {pick(['AI will replace programmers', 'pineapple belongs on pizza', 'cats are better than dogs', 'remote work is here to stay'])}?",
        lambda: f"Tell me a fun fact about {pick(['octopuses', 'space', 'the Roman empire', 'honey', 'penguins'])}.",
        lambda: f"What's a good {pick(['gift for a 30-year-old', 'name for a goldfish', 'place to visit in Portugal', 'way to fall asleep faster'])}?",
        lambda: f"How are you doing today?",
        lambda: f"I just got {pick(['promoted', 'a puppy', 'back from Japan', 'engaged', 'my driving licence'])}!",
        lambda: f"What time is it in {pick(['Tokyo', 'New York', 'Sydney', 'Berlin'])} right now?",
        lambda: f"Is it safe to {pick(['eat raw cookie dough', 'swim after eating', 'charge my phone overnight', 'drink coffee every day'])}?",
        lambda: "What can you do?",
        lambda: f"Can you help me with {pick(['my account', 'a question about billing', 'something quick', 'my homework later'])}?",
        lambda: f"What do you know about {pick(['black holes', 'the French revolution', 'electric cars', 'the Olympics'])}?",
        lambda: f"Why is the sky blue?",
        lambda: f"Any tips for {pick(['a first date', 'running a marathon', 'learning guitar', 'staying productive at home', 'a job interview'])}?",
        lambda: f"Which is healthier, {pick(['rice or pasta', 'tea or coffee', 'walking or cycling'])}?",
        lambda: f"lol that's {pick(['funny', 'wild', 'not what I expected'])}. what else?",
    ]
    return use(forms, "chat")


SCHEMAS = [
    '{"name": string, "email": string, "order_id": string|null, "issue": string}',
    '{"date": "YYYY-MM-DD", "amount": number, "currency": string, "merchant": string}',
    '{"people": [{"name": string, "role": string}], "action_items": [{"owner": string, "task": string, "due": string|null}]}',
    '{"product": string, "price": number, "specs": {"ram_gb": number, "storage_tb": number, "weight_kg": number}}',
    '{"sentiment": "positive"|"neutral"|"negative", "topics": [string]}',
    '{"events": [{"date": string, "description": string}]}',
    '{"company": string, "metric": string, "value": string}[]',
]


def mk_extraction():
    d = doc(long=R.random() < 0.25)
    forms = [
        lambda: f"Extract the following fields as JSON {pick(SCHEMAS)} from the text below.\n\n{d}",
        lambda: f"Text:\n{d}\n\nReturn a JSON object with keys: {', '.join(R.sample(FIELDS, 3))}. Use null if missing.",
        lambda: f"List all people, organisations and locations mentioned in this text:\n{d}",
        lambda: f"Pull out every date and amount from this and give me a table:\n{d}",
        lambda: f"From this email, extract the sender, the deadline and the requested action as JSON:\n{d}",
        lambda: f"Classify the sentiment of this review as positive, neutral or negative, and extract the product name. Answer in JSON.\n{d}",
        lambda: f"Parse this into structured data matching the schema {pick(SCHEMAS)}:\n\n{d}",
        lambda: f"Summarize and extract the key dates as JSON:\n{d}",
        lambda: f"Get all the email addresses and phone numbers from the following:\n{d}",
        lambda: f"{d}\n\nExtract: {', '.join(R.sample(FIELDS, 4))}. Output JSON only.",
        lambda: f"Tag each sentence of the text with its category (fact, opinion, request):\n{d}",
        lambda: f"What is the total amount and due date in this invoice? Respond as JSON {{\"total\": number, \"due\": string}}.\n{d}",
        lambda: f"Identify the action items and their owners in these notes, as a JSON list:\n{d}",
        lambda: f"Fill in this form from the text: Name: __, Company: __, Date: __, Amount: __\n\n{d}",
        lambda: f"Convert the following into CSV with columns {', '.join(R.sample(FIELDS, 3))}:\n{d}",
        lambda: f"Which of these categories does the ticket belong to: billing, technical, account, other? Also extract the customer email. JSON.\n\n{d}",
    ]
    return use(forms, "extraction")


FIELDS = ["name", "email", "date", "amount", "currency", "company", "location", "phone", "deadline", "product", "price",
          "order_id", "sentiment", "owner", "version", "due_date", "address"]


def mk_summarize():
    d = doc(long=R.random() < 0.35)
    forms = [
        lambda: f"Summarize this:\n\n{d}",
        lambda: f"TL;DR please:\n{d}",
        lambda: f"Give me the key points of this text in 3 bullets:\n{d}",
        lambda: f"{d}\n\nSummarize the above in two sentences.",
        lambda: f"Write an executive summary of the following report:\n{d}",
        lambda: f"Condense these meeting notes into a short recap for people who missed it:\n{d}",
        lambda: f"What is this article about? Give me a brief overview.\n\n{d}",
        lambda: f"Context:\n[1] {pick(DOCS)}\n[2] {pick(DOCS)}\n\nQuestion: what do these documents say overall? Summarize them.",
        lambda: f"Summarize the following thread for the on-call engineer:\n{d}",
        lambda: f"Can you sum up this email in one line?\n{d}",
        lambda: f"Give a short abstract (max 50 words) of:\n{d}",
        lambda: f"Here's a long document. Summarize the main arguments and conclusions.\n\n{d}",
        lambda: f"{d}\n\ntldr",
        lambda: f"Create a summary of this chapter for my study notes:\n{d}",
        lambda: f"Summarize the customer's complaint in one sentence for the ticket title:\n{d}",
        lambda: f"Using the retrieved passages below, write a concise synthesis of what they say.\n---\n{pick(DOCS)}\n---\n{pick(DOCS)}",
        lambda: f"Boil this down to the essentials:\n{d}",
        lambda: f"Write a one-paragraph recap of this incident for the weekly newsletter:\n{d}",
    ]
    return use(forms, "summarize")


def mk_translation():
    s = pick(SENTENCES)
    L = pick(LANGS)
    d = pick(DOCS)
    forms = [
        lambda: f"Translate to {L}: {s}",
        lambda: f"Translate the following into {L}:\n\n{d}",
        lambda: f"How do you say '{s}' in {L}?",
        lambda: f"Translate these UI strings into {L}. Keep the keys and placeholders unchanged:\n{{\"checkout.title\": \"{s}\", \"checkout.cta\": \"Pay now\", \"greeting\": \"Hello, {{name}}!\"}}",
        lambda: f"Please translate this docstring into {L}:\n\"\"\"{s}\"\"\"",
        lambda: f"{d}\n\nTranslate the text above into {L}.",
        lambda: f"What does '{pick(FOREIGN)}' mean in English?",
        lambda: f"Translate from {pick(LANGS)} to English: {pick(FOREIGN)}",
        lambda: f"Localize this push notification for the {L} market: \"{s}\"",
        lambda: f"Translate the comments in this code into English, leave the code unchanged:\n{pick(FOREIGN_CODE)}",
        lambda: f"Give me the {L} translation of this email:\n{d}",
        lambda: f"Translate into {L} and {pick(LANGS)}: \"{s}\"",
        lambda: f"{pick(FOREIGN)}\n\ntranslate pls",
        lambda: f"Translate this subtitle file to {L}, keep the timestamps:\n1\n00:00:01,000 --> 00:00:03,500\n{s}\n\n2\n00:00:04,000 --> 00:00:06,000\n{pick(SENTENCES)}",
        lambda: f"I need a faithful {L} version of this contract clause:\n{pick(DOCS)}",
        lambda: f"English to {L}, formal register: {s}",
    ]
    return use(forms, "translation")


FOREIGN = ["Je voudrais réserver une table pour deux personnes ce soir.", "Wo ist der nächste Bahnhof?",
           "La reunión se ha pospuesto hasta el lunes.", "Non vedo l'ora di vederti!", "Obrigado pela sua paciência.",
           "Ik heb de factuur nog niet ontvangen.", "Dziękuję bardzo za pomoc.", "お会計をお願いします。", "我明天要去北京出差。",
           "Bu ürün stokta yok.", "Das Paket wurde gestern zugestellt.", "Le service client est fermé le dimanche."]
FOREIGN_CODE = ["def calcula_total(itens):\n    # soma os preços de todos os itens do carrinho\n    return sum(i.preco for i in itens)\n",
                "// Prüft, ob der Benutzer angemeldet ist\nfunction istAngemeldet(user) { return !!user.token; }\n",
                "# vérifie que le fichier existe avant de l'ouvrir\nif os.path.exists(chemin):\n    ouvrir(chemin)\n"]


# --------------------------------------------------------------------------------------------- composed items
# Instruction phrasings x content x layout: more surface variety than the fixed forms above.
INSTR = {
    "reasoning": ["Work out the answer step by step", "Reason carefully before you answer", "Think this through and justify each step",
                  "Solve this and show your working", "Analyse the options and recommend one", "Decide what to do next and explain why",
                  "Evaluate the argument below and find the flaw", "Estimate this and state your assumptions",
                  "Break the problem into sub-problems and solve them", "What is the logical conclusion? Explain the deduction",
                  "Compare the alternatives, weigh trade-offs, then pick", "Plan the steps to reach the goal and order them by dependency",
                  "Check whether this reasoning is valid", "Calculate the result and double-check it",
                  "Given the constraints, what is the optimal choice? Prove it", "Diagnose the most likely root cause from these symptoms"],
    "code": ["Fix the bug in this code", "Refactor this code", "Explain this code", "Write tests for this", "Optimise this function",
             "Review this code for bugs and security issues", "Convert this code to another language", "Why does this throw an error?",
             "Add error handling to this", "Make this code thread-safe", "Document this function with comments",
             "Find the off-by-one error", "Rewrite this function using recursion", "Implement the missing method",
             "Debug this stack trace", "Clean up this code and remove duplication"],
    "creative": ["Write a poem inspired by", "Tell a short story about", "Write a funny scene involving", "Compose song lyrics about",
                 "Write a fable featuring", "Create a fictional diary entry by", "Write a limerick about", "Imagine and describe",
                 "Write a sci-fi vignette about", "Invent a legend about", "Write a monologue spoken by", "Draft a whimsical ad for",
                 "Write a children's picture book text about", "Write a dramatic opening scene with"],
    "rewrite": ["Rewrite this", "Rephrase the following", "Improve the wording of this text", "Make this clearer", "Edit this for tone",
                "Correct the mistakes in this", "Make this sound more natural", "Rewrite this more formally", "Rewrite this more casually",
                "Shorten this without changing its meaning", "Make this text more persuasive", "Rewrite for a younger audience",
                "Smooth out this draft", "Give this text a more positive tone", "Clean up the grammar and punctuation"],
    "chat": ["", "Quick question:", "Just curious,", "Hey,", "Hi again!", "Random thought:", "Honestly,", "So,"],
    "extraction": ["Extract the key fields from this as JSON", "Return structured data for the text below", "Pull out the entities",
                   "Parse this into the schema", "List every date, amount and name in this", "Give me the fields as key: value lines",
                   "Identify the requested values and output JSON", "Turn this text into a JSON record", "Fill the template fields from this",
                   "Detect and extract contact details", "Extract the line items as a table", "Tag the named entities in this text",
                   "Categorise this message and extract the reference number", "Return only the values of these keys"],
    "summarize": ["Summarize this", "Give me a summary", "Condense this", "Recap the following", "What are the main points here?",
                  "Give me the short version", "Outline the key takeaways", "Write a brief synopsis of this", "Digest this for me",
                  "Summarise in bullet points", "Write a one-line summary", "Provide an overview of this text",
                  "Sum up the essentials", "Give a high-level summary"],
    "translation": ["Translate this into {L}", "Put this in {L}", "Render the text in {L}", "Give me this in {L}",
                    "Convert this text to {L}", "Translate from English to {L}", "{L} translation please",
                    "Localize this copy for {L} speakers", "Translate to {L} and keep the formatting", "How would this read in {L}?",
                    "Translate into {L}, informal register", "Produce a faithful {L} translation"],
}
CHAT_BODIES = ["how's your week going?", "do you dream?", "what's the best pizza topping?", "I can't sleep, talk to me",
               "what do you think about Mondays?", "I just adopted a kitten!", "what's the tallest building in the world?",
               "how many continents are there?", "do you like jazz?", "what's a fun weekend activity in the rain?",
               "can I get a refund if I cancel today?", "my parcel shows delivered but I don't have it", "how do I change my username?",
               "is there an app for android?", "what are your opening hours?", "who are you?", "tell me something nice",
               "what should I name my plant?", "I'm so tired today", "when was the Eiffel Tower built?", "good luck on your day!",
               "which is bigger, a whale or a submarine?", "where do penguins live?", "do you have a dark mode?",
               "is my data safe with you?", "what's new?", "I passed my exam!!", "any movie recommendations for a rainy evening?",
               "what's the boiling point of water at altitude?", "how do I contact billing?", "can you hear me?"]
LAYOUTS = ["{i}:\n\n{c}", "{i}.\n{c}", "{c}\n\n{i}.", "{i}\n```\n{c}\n```", "{i} -- {c}", "{c}\n---\n{i}?", "{i}: \"{c}\""]


def content_for(label):
    if label == "code":
        lang, src = code()
        return pick([src, pick(TRACES), src + "\n" + pick(TRACES)])
    if label == "reasoning":
        return pick([f"Goal: {pick(GOALS)}. Observation: {pick(OBS)}.", mk_reasoning()])
    if label == "creative":
        return pick(TOPICS)
    if label == "rewrite":
        return pick(ROUGH + SENTENCES + DOCS)
    if label in ("extraction", "summarize"):
        return doc(long=R.random() < 0.3)
    if label == "translation":
        return pick(SENTENCES + DOCS[:8])
    return ""


def composed(label):
    i = R.randrange(len(INSTR[label]))
    instr = INSTR[label][i].format(L=pick(LANGS))
    TPL[0] = f"composed/{label}/{i}"
    if label == "chat":
        return (instr + " " + pick(CHAT_BODIES)).strip()
    c = content_for(label)
    if label == "creative":
        return f"{instr} {c}."
    if label == "extraction" and R.random() < 0.5:
        instr += " " + pick(SCHEMAS)
    return pick(LAYOUTS).format(i=instr, c=c)


MAKERS = {"reasoning": mk_reasoning, "code": mk_code, "creative": mk_creative, "rewrite": mk_rewrite, "chat": mk_chat,
          "extraction": mk_extraction, "summarize": mk_summarize, "translation": mk_translation}

# --------------------------------------------------------------------------------------------- non-English
# (lang, label) -> instruction templates with {doc}/{s}/{t}/{code}; a fraction of every label is non-English.
ML = {
    "de": {
        "reasoning": ["Ein Zug fährt mit {n} km/h und braucht 3 Stunden. Wie weit kommt er? Erkläre Schritt für Schritt.",
                      "Plane die nächsten Schritte, um dieses Ziel zu erreichen, und begründe die Reihenfolge: {goal}",
                      "Welche Option ist besser und warum? Wäge die Vor- und Nachteile ab: mieten oder kaufen bei {n} Euro Eigenkapital."],
        "code": ["Warum stürzt dieser Code ab?\n{code}", "Schreib eine Python-Funktion, die {ctask}.", "Ich bekomme diesen Fehler:\n{trace}\nWas mache ich falsch?"],
        "creative": ["Schreib ein kurzes Gedicht über {t}.", "Erzähl mir eine Gutenachtgeschichte über {t}.", "Denk dir einen witzigen Namen für {nameable} aus."],
        "rewrite": ["Formuliere diesen Text höflicher:\n{rough}", "Korrigiere bitte Rechtschreibung und Grammatik:\n{doc}", "Schreib das kürzer und klarer:\n{doc}"],
        "chat": ["Hallo, wie geht's dir?", "Was ist dein Lieblingsbuch?", "Wie kann ich mein Passwort zurücksetzen?", "Danke, schönen Abend noch!"],
        "extraction": ["Extrahiere Name, Datum und Betrag als JSON aus diesem Text:\n{doc}", "Liste alle Personen und Firmen auf, die hier vorkommen:\n{doc}"],
        "summarize": ["Fasse diesen Text in drei Sätzen zusammen:\n{doc}", "Gib mir eine kurze Zusammenfassung:\n{doc}"],
        "translation": ["Übersetze ins Englische: {foreign}", "Übersetze bitte diesen Absatz ins Französische:\n{doc}"],
    },
    "fr": {
        "reasoning": ["Résous ce problème étape par étape : un robinet remplit une cuve en {n} minutes, un autre en {m} minutes. Combien de temps avec les deux ?",
                      "Quelle stratégie choisir pour {goal} ? Analyse les risques et décide."],
        "code": ["Pourquoi ce code renvoie une erreur ?\n{code}", "Écris une fonction JavaScript qui {ctask}.", "J'ai cette erreur :\n{trace}\nComment la corriger ?"],
        "creative": ["Écris un poème sur {t}.", "Invente une histoire courte sur {t}.", "Propose un slogan pour {nameable}."],
        "rewrite": ["Reformule ce message de façon plus professionnelle :\n{rough}", "Corrige les fautes de ce texte :\n{doc}", "Réécris ce paragraphe de manière plus simple :\n{doc}"],
        "chat": ["Salut ! Ça va ?", "Tu connais un bon film à voir ce soir ?", "Comment annuler mon abonnement ?", "Merci beaucoup, bonne journée !"],
        "extraction": ["Extrais les dates et les montants de ce texte au format JSON :\n{doc}", "Donne-moi le nom, l'e-mail et le numéro de commande en JSON :\n{doc}"],
        "summarize": ["Résume ce texte en quelques lignes :\n{doc}", "Fais-moi un résumé de ce document :\n{doc}"],
        "translation": ["Traduis en anglais : {foreign}", "Peux-tu traduire ce texte en espagnol ?\n{doc}"],
    },
    "es": {
        "reasoning": ["Razona paso a paso: si {n} obreros tardan 6 días, ¿cuánto tardan {m} obreros?", "Divide este objetivo en pasos y decide por dónde empezar: {goal}"],
        "code": ["¿Por qué falla este código?\n{code}", "Escribe una función en Python que {ctask}.", "Me sale este error:\n{trace}\n¿Cómo lo soluciono?"],
        "creative": ["Escribe un poema sobre {t}.", "Cuéntame un cuento corto sobre {t}.", "Inventa un eslogan para {nameable}."],
        "rewrite": ["Reescribe este correo para que suene más formal:\n{rough}", "Corrige la gramática de este texto:\n{doc}"],
        "chat": ["¡Hola! ¿Qué tal?", "¿Cuál es tu comida favorita?", "¿Cómo cambio mi dirección de envío?", "Gracias, hasta luego."],
        "extraction": ["Extrae los nombres, fechas e importes de este texto en JSON:\n{doc}", "Saca los datos de contacto de este mensaje:\n{doc}"],
        "summarize": ["Resume este texto en dos frases:\n{doc}", "Hazme un resumen breve de este informe:\n{doc}"],
        "translation": ["Traduce al inglés: {foreign}", "Traduce este párrafo al alemán:\n{doc}"],
    },
    "pt": {
        "reasoning": ["Resolva passo a passo: um produto custa {n} reais após 20% de desconto. Qual era o preço original?", "Analise as opções e decida a melhor estratégia para {goal}."],
        "code": ["Por que este código dá erro?\n{code}", "Escreva uma função em Go que {ctask}."],
        "creative": ["Escreva um poema sobre {t}.", "Crie uma história curta sobre {t}."],
        "rewrite": ["Reescreva este texto de forma mais educada:\n{rough}", "Melhore a redação deste parágrafo:\n{doc}"],
        "chat": ["Oi, tudo bem?", "Como eu rastreio meu pedido?", "Qual é o seu filme favorito?"],
        "extraction": ["Extraia nome, data e valor deste texto em JSON:\n{doc}"],
        "summarize": ["Resuma este texto em poucas linhas:\n{doc}"],
        "translation": ["Traduza para o inglês: {foreign}", "Traduza este e-mail para o espanhol:\n{doc}"],
    },
    "it": {
        "reasoning": ["Ragiona passo dopo passo: quanti minuti ci vogliono per percorrere {n} km a 60 km/h?"],
        "code": ["Perché questo codice non funziona?\n{code}", "Scrivi una funzione Python che {ctask}."],
        "creative": ["Scrivi una poesia su {t}.", "Inventa una breve storia su {t}."],
        "rewrite": ["Riscrivi questo messaggio in modo più cortese:\n{rough}"],
        "chat": ["Ciao, come stai?", "Come posso recuperare la password?"],
        "extraction": ["Estrai date e importi da questo testo in formato JSON:\n{doc}"],
        "summarize": ["Riassumi questo testo in tre frasi:\n{doc}"],
        "translation": ["Traduci in inglese: {foreign}", "Traduci questo paragrafo in tedesco:\n{doc}"],
    },
}

ML_MORE = {
    "de": {"reasoning": ["Analysiere die Optionen und triff eine begründete Entscheidung: {goal}", "Löse die Aufgabe schrittweise: {n} + {m} * 3 = ? Prüfe das Ergebnis."],
           "code": ["Refaktoriere diesen Code:\n{code}", "Schreibe Unit-Tests für diese Funktion:\n{code}"],
           "creative": ["Schreib eine lustige Geschichte über {t}.", "Verfasse einen Liedtext über {t}."],
           "rewrite": ["Formuliere den Text professioneller:\n{doc}", "Mach diese Nachricht freundlicher:\n{rough}"],
           "chat": ["Guten Morgen! Was gibt's Neues?", "Wo finde ich meine Rechnungen?", "Erzähl mir was Lustiges."],
           "extraction": ["Gib mir alle Daten und Beträge aus diesem Text als Tabelle:\n{doc}", "Extrahiere die Felder {fields} als JSON:\n{doc}"],
           "summarize": ["Was sind die Kernaussagen dieses Textes?\n{doc}", "Fasse das bitte kurz zusammen:\n{doc}"],
           "translation": ["Übersetze ins Deutsche: {s}", "Wie heißt das auf Englisch? {foreign}"]},
    "fr": {"reasoning": ["Raisonne étape par étape et donne la réponse : {n} pommes partagées entre {m} enfants, combien chacun ?"],
           "code": ["Optimise cette fonction :\n{code}", "Explique ce que fait ce code :\n{code}"],
           "creative": ["Raconte une histoire drôle sur {t}.", "Écris des paroles de chanson sur {t}."],
           "rewrite": ["Améliore le style de ce texte :\n{doc}", "Rends ce message plus poli :\n{rough}"],
           "chat": ["Bonsoir ! Tu vas bien ?", "Quels sont vos horaires d'ouverture ?", "Raconte-moi une anecdote."],
           "extraction": ["Extrais les champs {fields} de ce texte en JSON :\n{doc}"],
           "summarize": ["Quels sont les points clés de ce document ?\n{doc}", "Résume en une phrase :\n{doc}"],
           "translation": ["Traduis en français : {s}", "Que veut dire « {foreign} » ?"]},
    "es": {"reasoning": ["Analiza las opciones y elige la mejor, justificando: {goal}"],
           "code": ["Refactoriza este código:\n{code}", "Explícame este error:\n{trace}"],
           "creative": ["Escribe una canción sobre {t}.", "Escribe un chiste sobre {t}."],
           "rewrite": ["Mejora la redacción de este párrafo:\n{doc}", "Haz que este mensaje suene más amable:\n{rough}"],
           "chat": ["¿Qué tal tu día?", "¿Tienen envío gratis?", "Cuéntame algo curioso."],
           "extraction": ["Extrae los campos {fields} en formato JSON:\n{doc}"],
           "summarize": ["¿Cuáles son las ideas principales de este texto?\n{doc}"],
           "translation": ["Traduce al español: {s}", "¿Qué significa '{foreign}'?"]},
    "nl": {"reasoning": ["Los stap voor stap op: {n} euro verdelen over {m} personen, hoeveel krijgt ieder?"],
           "code": ["Waarom werkt deze code niet?\n{code}"], "creative": ["Schrijf een gedicht over {t}."],
           "rewrite": ["Herschrijf deze tekst formeler:\n{rough}"], "chat": ["Hallo! Alles goed?", "Hoe wijzig ik mijn wachtwoord?"],
           "extraction": ["Haal de namen en datums uit deze tekst als JSON:\n{doc}"], "summarize": ["Vat deze tekst samen:\n{doc}"],
           "translation": ["Vertaal naar het Nederlands: {s}"]},
    "pl": {"reasoning": ["Rozwiąż krok po kroku: {n} podzielone przez {m}, a potem pomnożone przez 3."],
           "code": ["Dlaczego ten kod nie działa?\n{code}"], "creative": ["Napisz wiersz o {t}."],
           "rewrite": ["Przepisz ten tekst bardziej uprzejmie:\n{rough}"], "chat": ["Cześć, jak się masz?", "Jak zmienić hasło?"],
           "extraction": ["Wyodrębnij daty i kwoty z tekstu w formacie JSON:\n{doc}"], "summarize": ["Podsumuj ten tekst:\n{doc}"],
           "translation": ["Przetłumacz na polski: {s}"]},
    "ja": {"reasoning": ["順を追って考えてください：{n}個のりんごを{m}人で分けると一人何個ですか？"],
           "code": ["このコードのバグを直してください：\n{code}"], "creative": ["{t}についての詩を書いてください。"],
           "rewrite": ["この文章をもっと分かりやすく書き直してください：\n{doc}"], "chat": ["こんばんは！元気ですか？", "パスワードを変更するには？"],
           "extraction": ["この文章から日付と金額をJSONで抽出してください：\n{doc}"], "summarize": ["この文章を要約してください：\n{doc}"],
           "translation": ["日本語に翻訳してください：{s}"]},
    "zh": {"reasoning": ["请一步一步推理：{n}个苹果分给{m}个人，每人几个？"],
           "code": ["这段代码有什么问题？\n{code}"], "creative": ["写一个关于{t}的故事。"],
           "rewrite": ["请润色这段文字：\n{doc}"], "chat": ["嗨，最近怎么样？", "怎么修改我的密码？"],
           "extraction": ["从这段文字中提取日期和金额，输出JSON：\n{doc}"], "summarize": ["请总结这段文字：\n{doc}"],
           "translation": ["翻译成中文：{s}"]},
    "ru": {"reasoning": ["Реши пошагово: {n} рублей разделить на {m} человек. Сколько получит каждый?"],
           "code": ["Почему этот код падает?\n{code}"], "creative": ["Напиши стихотворение про {t}."],
           "rewrite": ["Перепиши этот текст более официально:\n{rough}"], "chat": ["Привет, что нового?", "Как сменить пароль?"],
           "extraction": ["Извлеки из текста даты и суммы в JSON:\n{doc}"], "summarize": ["Сделай краткое содержание текста:\n{doc}"],
           "translation": ["Переведи на русский: {s}"]},
}
for _lang, _d in ML_MORE.items():
    for _lab, _tpls in _d.items():
        ML.setdefault(_lang, {}).setdefault(_lab, []).extend(_tpls)

ML_EXTRA2 = {
    "de": {"reasoning": ["Denk gründlich nach: Lohnt sich {goal}? Wäge Kosten und Risiken ab und entscheide.", "Berechne Schritt für Schritt, wie viel {n} Euro bei {m} % Zinsen nach 3 Jahren sind.", "Finde den Denkfehler in diesem Argument: {flaw}"],
           "code": ["Optimiere diese Funktion, sie ist zu langsam:\n{code}", "Erkläre mir diesen Stacktrace:\n{trace}", "Implementiere in Python eine Funktion, die {ctask}."],
           "creative": ["Schreib einen Witz über {t}.", "Erfinde einen Slogan für {nameable}.", "Schreib eine kurze Szene mit {t}."],
           "rewrite": ["Verbessere den Stil dieses Absatzes:\n{doc}", "Schreib diese E-Mail in einem lockeren Ton um:\n{rough}", "Formuliere den Satz um: {s}"],
           "chat": ["Was machst du so am Wochenende?", "Welchen Film soll ich mir heute Abend ansehen?", "Wer hat das Telefon erfunden?", "Ich bin heute so müde."],
           "extraction": ["Welche Personen, Orte und Daten kommen im Text vor? Antworte als JSON.\n{doc}", "Lies die Nachricht und gib Bestellnummer und E-Mail zurück:\n{doc}"],
           "summarize": ["Worum geht es in diesem Text? Kurz bitte.\n{doc}", "Gib mir eine Zusammenfassung in Stichpunkten:\n{doc}", "{doc}\n\nFasse das in einem Satz zusammen."],
           "translation": ["Übersetze den folgenden Absatz ins Englische:\n{doc}", "Wie sagt man '{s}' auf Spanisch?", "Übersetze diese App-Texte ins Italienische: {s}"]},
    "fr": {"reasoning": ["Réfléchis bien : faut-il {goal} ? Pèse le pour et le contre puis décide.", "Calcule étape par étape le prix initial d'un article vendu {n} euros après 20 % de remise.", "Trouve l'erreur de raisonnement : {flaw}"],
           "code": ["Ajoute des tests unitaires pour ce code :\n{code}", "Que signifie cette erreur ?\n{trace}", "Implémente en Go une fonction qui {ctask}."],
           "creative": ["Écris une blague sur {t}.", "Invente un nom pour {nameable}.", "Écris une courte scène avec {t}."],
           "rewrite": ["Réécris cet e-mail sur un ton plus chaleureux :\n{rough}", "Simplifie ce texte :\n{doc}", "Paraphrase cette phrase : {s}"],
           "chat": ["Tu fais quoi ce week-end ?", "Qui a peint la Joconde ?", "Je suis fatigué aujourd'hui.", "Tu peux me conseiller un livre ?"],
           "extraction": ["Quelles personnes, lieux et dates sont cités ? Réponds en JSON.\n{doc}", "Classe ce message (facturation, technique, compte) et extrais le numéro de commande :\n{doc}"],
           "summarize": ["De quoi parle ce texte ? En bref.\n{doc}", "Fais un résumé en trois points :\n{doc}", "{doc}\n\nRésume cela en une phrase."],
           "translation": ["Traduis ce paragraphe en anglais :\n{doc}", "Comment dit-on « {s} » en allemand ?", "Traduis ces textes d'interface en espagnol : {s}"]},
    "es": {"reasoning": ["Piensa con calma: ¿conviene {goal}? Evalúa pros y contras y decide.", "Calcula paso a paso cuánto son {n} euros al {m} % de interés en 3 años.", "Encuentra el fallo lógico: {flaw}"],
           "code": ["Añade pruebas unitarias a este código:\n{code}", "Implementa en JavaScript una función que {ctask}.", "Optimiza esta función:\n{code}"],
           "creative": ["Escribe un cuento corto sobre {t}.", "Inventa un nombre para {nameable}.", "Escribe un poema divertido sobre {t}."],
           "rewrite": ["Reescribe este texto con un tono más profesional:\n{doc}", "Parafrasea esta frase: {s}", "Haz este correo más educado:\n{rough}"],
           "chat": ["¿Qué haces este fin de semana?", "¿Quién escribió Don Quijote?", "Estoy muy cansado hoy.", "¿Me recomiendas una serie?"],
           "extraction": ["¿Qué personas, lugares y fechas aparecen? Responde en JSON.\n{doc}", "Clasifica este mensaje y extrae el número de pedido:\n{doc}"],
           "summarize": ["¿De qué trata este texto? Brevemente.\n{doc}", "Resume en tres puntos:\n{doc}", "{doc}\n\nResúmelo en una frase."],
           "translation": ["Traduce este párrafo al inglés:\n{doc}", "¿Cómo se dice '{s}' en francés?", "Traduce estos textos de la app al portugués: {s}"]},
    "pt": {"reasoning": ["Pense com cuidado: vale a pena {goal}? Pese prós e contras e decida.", "Calcule passo a passo quanto rendem {n} reais a {m}% ao ano em 3 anos."],
           "code": ["Adicione testes unitários a este código:\n{code}", "O que significa este erro?\n{trace}", "Refatore esta função:\n{code}"],
           "creative": ["Escreva uma piada sobre {t}.", "Invente um slogan para {nameable}."],
           "rewrite": ["Reescreva este e-mail com um tom mais amigável:\n{rough}", "Simplifique este texto:\n{doc}", "Corrija os erros deste texto:\n{doc}"],
           "chat": ["O que você vai fazer no fim de semana?", "Quem pintou a Mona Lisa?", "Pode me recomendar um livro?"],
           "extraction": ["Quais pessoas, lugares e datas aparecem? Responda em JSON.\n{doc}", "Extraia o número do pedido e o e-mail desta mensagem:\n{doc}"],
           "summarize": ["Sobre o que é este texto? Resumidamente.\n{doc}", "Faça um resumo em tópicos:\n{doc}", "{doc}\n\nResuma isso em uma frase."],
           "translation": ["Traduza este parágrafo para o inglês:\n{doc}", "Como se diz '{s}' em francês?"]},
    "it": {"reasoning": ["Pensaci bene: conviene {goal}? Valuta pro e contro e decidi.", "Trova l'errore logico: {flaw}"],
           "code": ["Aggiungi test unitari a questo codice:\n{code}", "Cosa significa questo errore?\n{trace}", "Ottimizza questa funzione:\n{code}"],
           "creative": ["Scrivi una barzelletta su {t}.", "Inventa uno slogan per {nameable}.", "Scrivi una canzone su {t}."],
           "rewrite": ["Riscrivi questa email con un tono più professionale:\n{rough}", "Semplifica questo testo:\n{doc}", "Correggi la grammatica:\n{doc}"],
           "chat": ["Cosa fai questo fine settimana?", "Chi ha scritto la Divina Commedia?", "Mi consigli un film?"],
           "extraction": ["Quali persone, luoghi e date compaiono? Rispondi in JSON.\n{doc}", "Estrai il numero d'ordine e l'email da questo messaggio:\n{doc}"],
           "summarize": ["Di cosa parla questo testo? In breve.\n{doc}", "Fai un riassunto per punti:\n{doc}", "{doc}\n\nRiassumi in una frase."],
           "translation": ["Traduci questo paragrafo in inglese:\n{doc}", "Come si dice '{s}' in spagnolo?"]},
    "nl": {"reasoning": ["Denk goed na: is het slim om {goal}? Weeg de voor- en nadelen af."], "code": ["Schrijf een Python-functie die {ctask}.", "Wat betekent deze fout?\n{trace}"],
           "creative": ["Schrijf een kort verhaal over {t}."], "rewrite": ["Verbeter de stijl van deze tekst:\n{doc}"],
           "chat": ["Wat ga je dit weekend doen?", "Kun je een boek aanraden?"], "extraction": ["Welke personen en datums staan in de tekst? Antwoord in JSON.\n{doc}"],
           "summarize": ["Geef een korte samenvatting:\n{doc}"], "translation": ["Vertaal deze alinea naar het Engels:\n{doc}"]},
    "pl": {"reasoning": ["Zastanów się dokładnie: czy warto {goal}? Rozważ za i przeciw."], "code": ["Napisz funkcję w Pythonie, która {ctask}.", "Co oznacza ten błąd?\n{trace}"],
           "creative": ["Napisz krótkie opowiadanie o {t}."], "rewrite": ["Popraw styl tego tekstu:\n{doc}"],
           "chat": ["Co robisz w weekend?", "Możesz polecić jakiś film?"], "extraction": ["Jakie osoby i daty pojawiają się w tekście? Odpowiedz w JSON.\n{doc}"],
           "summarize": ["Streść krótko ten tekst:\n{doc}"], "translation": ["Przetłumacz ten akapit na angielski:\n{doc}"]},
    "ja": {"reasoning": ["よく考えて判断してください：{goal}べきですか？長所と短所を比べてください。"], "code": ["{ctask}関数をPythonで書いてください。", "このエラーの意味は何ですか？\n{trace}"],
           "creative": ["{t}についての短い物語を書いてください。"], "rewrite": ["この文章をもっと丁寧に書き直してください：\n{rough}"],
           "chat": ["週末は何をしますか？", "おすすめの映画はありますか？"], "extraction": ["この文章に出てくる人名と日付をJSONで抽出してください：\n{doc}"],
           "summarize": ["この文章を三行で要約してください：\n{doc}"], "translation": ["この段落を英語に翻訳してください：\n{doc}"]},
    "zh": {"reasoning": ["请仔细思考：我们应该{goal}吗？权衡利弊后做出决定。"], "code": ["用Python写一个函数，{ctask}。", "这个错误是什么意思？\n{trace}"],
           "creative": ["写一首关于{t}的诗。"], "rewrite": ["请把这段话改写得更礼貌：\n{rough}"],
           "chat": ["你周末做什么？", "能推荐一部电影吗？"], "extraction": ["从这段文字中提取人名和日期，输出JSON：\n{doc}"],
           "summarize": ["请用三句话概括这段文字：\n{doc}"], "translation": ["请把这段话翻译成英文：\n{doc}"]},
    "ru": {"reasoning": ["Подумай хорошо: стоит ли {goal}? Взвесь все за и против."], "code": ["Напиши функцию на Python, которая {ctask}.", "Что означает эта ошибка?\n{trace}"],
           "creative": ["Напиши короткий рассказ про {t}."], "rewrite": ["Исправь ошибки в этом тексте:\n{doc}"],
           "chat": ["Что делаешь на выходных?", "Посоветуй фильм."], "extraction": ["Найди в тексте имена и даты, ответ в JSON:\n{doc}"],
           "summarize": ["Кратко перескажи этот текст:\n{doc}"], "translation": ["Переведи этот абзац на английский:\n{doc}"]},
}
for _lang, _d in ML_EXTRA2.items():
    for _lab, _tpls in _d.items():
        ML.setdefault(_lang, {}).setdefault(_lab, []).extend(_tpls)
FLAWS = ["Tous les chats sont gris la nuit, donc tous les animaux gris sont des chats.",
         "Wenn es regnet, ist die Straße nass. Die Straße ist nass, also hat es geregnet.",
         "Every successful startup had a pitch deck, so a pitch deck guarantees success."]


def ml_item(label):
    langs = [l for l in ML if label in ML[l]]
    lang = pick(langs)
    k = R.randrange(len(ML[lang][label]))
    tpl = ML[lang][label][k]
    TPL[0] = f"ml/{lang}/{label}/{k}"
    lang_code, src = code()
    text = tpl.format(n=R.randint(3, 120), m=R.randint(2, 40), goal=pick(GOALS), code=src, ctask=pick(CODE_TASKS),
                      trace=pick(TRACES), t=pick(TOPICS), nameable=pick(NAMEABLE), rough=pick(ROUGH), doc=doc(),
                      foreign=pick(FOREIGN), s=pick(SENTENCES), flaw=pick(FLAWS), fields=", ".join(R.sample(FIELDS, 3)))
    return lang, text


# --------------------------------------------------------------------------------------------- wrappers
def prior_turns():
    """A short history of OTHER tasks (user + assistant) that precedes the labelled last turn."""
    other = pick(list(MAKERS))
    u = MAKERS[other]()
    if len(u) > 400:
        u = u[:400]
    a = pick(["Sure, here it is.", "Here you go:\n\n...", "Done. Let me know if you want changes.", "Okay! Here's what I came up with.",
              "Good question. In short: it depends on the context.", "Here is the result you asked for."])
    return [{"role": "user", "content": u}, {"role": "assistant", "content": a}]


FOLLOWUPS = {
    "translation": ["now translate that into {L}", "can you give me the same in {L}?", "ok, and in {L}?"],
    "summarize": ["summarize what you just wrote in one sentence", "tl;dr of that?", "give me the short version of your answer"],
    "rewrite": ["make it more formal", "rewrite that in a friendlier tone", "shorter please, same meaning"],
    "code": ["now write a unit test for it", "that throws a NullPointerException, fix it", "convert it to TypeScript"],
    "creative": ["now turn it into a poem", "write a funny story about that", "make up a song about it"],
    "chat": ["thanks! that's all for today", "haha, you're funny", "cool. how's your day going?"],
    "extraction": ["now pull out all the names and dates from it as JSON", "extract the prices into a table"],
    "reasoning": ["are you sure? check the math step by step", "what's the flaw in that argument? reason it through"],
}


def wrap(label, text, lang):
    tpl = TPL[0]
    msgs = []
    if R.random() < 0.33:
        msgs.append({"role": "system", "content": pick(SYSTEMS[pick(LABEL_SYSTEMS[label])])})
    if R.random() < 0.2:
        msgs += prior_turns()
        TPL[0] = tpl
        if lang == "en" and R.random() < 0.4:
            k = R.randrange(len(FOLLOWUPS[label]))
            text = FOLLOWUPS[label][k].format(L=pick(LANGS))
            TPL[0] = f"followup/{label}/{k}"
    msgs.append({"role": "user", "content": text})
    return {"messages": msgs, "label": label, "lang": lang, "src": TPL[0]}


# --------------------------------------------------------------------------------------------- pipeline steps
# The system prompt carries the task and the user turn is only data (extractor / localization / summarizer
# steps of agent pipelines): GUIDE.md rule 2.
SYS_TASK = {
    "reasoning": ["You are the planning step of an agent. The user message is the current state; decide the next action and justify it step by step.",
                  "Solve the problem the user sends. Reason step by step and give the final answer on the last line."],
    "code": ["You are a code reviewer. The user sends code or an error log; find the bug and propose a fix as a diff.",
             "You are a coding agent. For the snippet the user sends, write unit tests."],
    "creative": ["You are a poet. Write a short poem about whatever topic the user sends.",
                 "Write a children's story inspired by the user's message. Be playful."],
    "rewrite": ["Rewrite the user's text in a more professional tone. Return only the rewritten text.",
                "You are a proofreader. Correct grammar and spelling in the text the user sends and return the corrected text."],
    "chat": ["You are a friendly companion. Chat casually with the user.",
             "You are the customer support assistant of an online shop. Answer the customer's questions politely."],
    "extraction": ["Extract {schema} from the text the user sends. Output JSON only.",
                   "You are a named-entity extractor. Return the people, organisations, locations and dates in the user's text as JSON."],
    "summarize": ["Summarize any text the user sends in at most three sentences.",
                  "You write TL;DRs. Condense the user's document into three bullet points."],
    "translation": ["Translate every user message into {L}. Output only the translation.",
                    "You are the localization step of a CI pipeline: translate the strings the user sends into {L}, keeping placeholders."],
}


def sys_task_item(label):
    k = R.randrange(len(SYS_TASK[label]))
    system = SYS_TASK[label][k].format(schema=pick(SCHEMAS), L=pick(LANGS))
    TPL[0] = f"systask/{label}/{k}"
    if label == "chat":
        user = pick(CHAT_BODIES)
    elif label == "creative":
        user = pick(TOPICS)
    elif label == "reasoning":
        user = f"Goal: {pick(GOALS)}. Observation: {pick(OBS)}."
    elif label == "code":
        user = pick([code()[1], pick(TRACES)])
    elif label == "translation":
        user = pick(SENTENCES + DOCS[:6])
    else:
        user = doc(long=R.random() < 0.3)
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "label": label, "lang": "en", "src": TPL[0]}


# --------------------------------------------------------------------------------------------- v4
# Non-English items with native content (ml_v4.py) and English phrasings v3 lacked.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ml_v4  # noqa: E402


def ml4_item(label):
    lang = pick([l for l in ml_v4.INSTR4 if label in ml_v4.INSTR4[l]])
    k = R.randrange(len(ml_v4.INSTR4[lang][label]))
    TPL[0] = f"ml4/{lang}/{label}/{k}"
    nat = ml_v4.NATIVE[lang]
    text = ml_v4.INSTR4[lang][label][k].format(
        doc=pick(nat["doc"]), rough=pick(nat["rough"]), s=pick(nat["sent"]), t=pick(nat["topic"]), L=pick(nat["L"]),
        code=code()[1], trace=pick(TRACES), n=R.randint(3, 120), m=R.randint(2, 40))
    return lang, text


def en4_item(label):
    k = R.randrange(len(ml_v4.EN4[label]))
    TPL[0] = f"en4/{label}/{k}"
    text = ml_v4.EN4[label][k].format(
        doc=doc(long=R.random() < 0.3), rough=pick(ROUGH), s=pick(SENTENCES), L=pick(LANGS), foreign=pick(FOREIGN),
        obs=pick(OBS), goal=pick(GOALS), flaw=pick(FLAWS), choice=pick(ml_v4.EN_FILL["choice"]),
        things=pick(ml_v4.EN_FILL["things"]), box=pick(ml_v4.EN_FILL["box"]), n=R.randint(3, 12), m=R.randint(2, 9))
    return "en", text


def main():
    items, seen = [], set()
    for label, maker in MAKERS.items():
        n, tries = 0, 0
        while n < PER_LABEL and tries < PER_LABEL * 50:
            tries += 1
            r = R.random()
            if r < 0.06:
                it = sys_task_item(label)
                key = json.dumps(it["messages"], ensure_ascii=False)
                if key not in seen:
                    seen.add(key)
                    items.append(it)
                    n += 1
                continue
            if r < 0.22:
                lang, text = ml_item(label)
            elif r < 0.44:
                lang, text = ml4_item(label)
            elif r < 0.54 and label in ml_v4.EN4:
                lang, text = en4_item(label)
            elif r < 0.7:
                lang, text = "en", composed(label)
            else:
                lang, text = "en", maker()
            it = wrap(label, text, lang)
            key = json.dumps(it["messages"], ensure_ascii=False)
            if key in seen:
                continue
            seen.add(key)
            items.append(it)
            n += 1
    R.shuffle(items)
    with OUT.open("w") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} items to {OUT}")


if __name__ == "__main__":
    main()
