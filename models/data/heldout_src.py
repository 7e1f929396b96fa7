"""Hand-written held-out split -> models/data/heldout.jsonl.

Written separately from gen_train.py: its own phrasings, documents, code and traces, several languages.
It is never used for training or tuning; models/neardup.py proves no item is a near duplicate of a training
item (the training script fails on a leak).

    python models/data/heldout_src.py
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("heldout.jsonl")
ITEMS: list[dict] = []


def H(label, lang, user, system=None, history=None):
    msgs = []
    if system:
        msgs.append({"role": "system", "content": system})
    for i, h in enumerate(history or []):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": h})
    msgs.append({"role": "user", "content": user})
    ITEMS.append({"messages": msgs, "label": label, "lang": lang})


# ------------------------------------------------------------------------------------ held-out-only material
PRIVACY = ("4. How long we keep your data. We retain account information for as long as your account is active and for "
           "24 months after closure, to comply with tax and anti-fraud obligations. Usage logs are deleted after 90 days. "
           "Payment data is processed by our provider, Stripe, and is never stored on our servers. You can request "
           "deletion at any time by writing to privacy@lumora.app; we will respond within 30 days. Backups are encrypted "
           "and rotated every 35 days, so deleted data may persist in backups for up to five weeks.")
RETRO = ("Sprint 42 retro. What went well: the new onboarding flow shipped on time and conversion went from 31% to 38%. "
         "Pairing between backend and design reduced rework. What didn't: the staging environment was down for two days, "
         "which blocked QA; three stories were carried over because estimates ignored the API migration. Actions: Karim sets "
         "up a second staging cluster by 14 Nov; Lucia adds a migration checklist to the story template; the team will "
         "timebox spikes to one day. Next retro on 27 November, facilitated by Jun.")
PORT = ("Dock workers at the port of Rotterdam began a 48-hour strike on Wednesday over pay and automation plans, halting "
        "container traffic at two of the largest terminals. The union says the operator wants to replace 300 crane jobs "
        "with remote-controlled systems by 2027. Shipping lines warned of delays of up to a week for cargo bound for "
        "Germany and Switzerland. The operator called the strike disproportionate and said talks would resume on Monday.")
SLEEP = ("Several studies suggest that slow-wave sleep plays a role in consolidating declarative memories. In a 2019 "
         "experiment, 60 students who napped for 90 minutes after learning word pairs recalled 20% more pairs than a group "
         "that stayed awake. However, the effect shrank when the test was repeated a week later, and other researchers "
         "failed to replicate it with older adults. The mechanism, possibly involving hippocampal replay, remains debated.")
TRANSCRIPT = ("Customer: hi my package says delivered but its not here\nAgent: I'm sorry to hear that! Could you share your "
              "order number?\nCustomer: 7781-KQ\nAgent: Thanks. The courier marked it delivered at 14:02 on 9 March, left at "
              "the front door.\nCustomer: there's nothing at the door, I was home all day\nAgent: I understand. I've opened "
              "an investigation with the courier; it takes up to 3 business days. If it's not found we will send a "
              "replacement or refund you, your choice.\nCustomer: ok replacement please. my email is d.nguyen@mailbox.org")
JOBPOST = ("We're hiring: Platform Engineer (remote, EU time zones). You'll run our Kubernetes clusters on GCP, own the "
           "Terraform modules and improve our CI pipelines. Must have: 3+ years with Kubernetes, Go or Python, on-call "
           "experience. Nice to have: Istio, Bazel. Salary 75-95k EUR plus equity. Apply by 15 January with your CV to "
           "jobs@fernwave.io. Interviews: a 30-minute call, a take-home task, and a final panel.")
DE_DOC = ("Die Stadtwerke haben am Montag angekündigt, die Strompreise zum 1. Februar um durchschnittlich 9 Prozent zu "
          "senken. Grund seien gesunkene Einkaufspreise an der Börse. Ein Haushalt mit einem Verbrauch von 2.500 kWh spart "
          "damit rund 80 Euro im Jahr. Die Verbraucherzentrale begrüßte den Schritt, forderte aber, auch die Grundgebühr zu "
          "überprüfen, die seit 2022 um 30 Prozent gestiegen ist.")
FR_DOC = ("Le festival de musique de la ville aura lieu du 4 au 7 juillet au parc des Expositions. Plus de 60 artistes sont "
          "attendus, dont trois têtes d'affiche internationales. Les billets sont en vente à partir de 35 euros la journée. "
          "Pour limiter les embouteillages, la mairie mettra en place des navettes gratuites depuis la gare centrale toutes "
          "les 15 minutes. Les organisateurs espèrent accueillir 80 000 spectateurs.")
ES_DOC = ("Cenamos el sábado en La Huerta de Ana. El local es pequeño pero acogedor y el servicio fue muy atento. Probamos "
          "las croquetas de boletus, un arroz meloso de pato y una tarta de queso espectacular. Lo peor: tardaron 40 minutos "
          "en traer el arroz y el vino por copas era caro (7 euros). Pagamos 48 euros por persona. Volveremos, pero "
          "reservaremos con antelación.")
PT_DOC = ("A prefeitura anunciou que o metrô vai funcionar 24 horas nos fins de semana a partir de setembro, em caráter "
          "experimental por seis meses. A medida deve custar 12 milhões de reais e atender cerca de 40 mil passageiros por "
          "noite. Sindicatos pedem contratação de mais seguranças.")
PY_BUG = ("def top_customers(df, n=5):\n    out = df.groupby('customer')['amount'].sum()\n    out.sort_values(ascending=False)\n"
          "    return out.head(n)\n")
JS_BUG = ("async function loadProfile(id) {\n  const res = fetch(`/api/profile/${id}`);\n  const data = res.json();\n"
          "  document.querySelector('#name').textContent = data.name;\n}\n")
RS_SNIP = ("fn longest(a: &str, b: &str) -> &str {\n    if a.len() > b.len() { a } else { b }\n}\n")
KT_SNIP = ("data class Invoice(val id: String, val lines: List<Line>) {\n    fun total() = lines.map { it.qty * it.price }.sum()\n}\n")
CS_SNIP = ("var adults = people.Where(p => p.Age > 18).Select(p => p.Name).ToList();\nforeach (var n in adults) Console.WriteLine(n);\n")
DJ_TRACE = ("Internal Server Error: /api/orders/\nTraceback (most recent call last):\n  File \"/srv/app/views.py\", line 88, in list_orders\n"
            "    region = request.user.profile.settings.get('region')\nAttributeError: 'NoneType' object has no attribute 'get'")
NODE_TRACE = ("Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {\n"
              "  errno: -111, code: 'ECONNREFUSED', syscall: 'connect', address: '127.0.0.1', port: 5432 }")
K8S_LOG = ("NAME                      READY   STATUS             RESTARTS   AGE\napi-7d9c8b5f4-xk2lp       0/1     CrashLoopBackOff   6          9m\n"
           "$ kubectl logs api-7d9c8b5f4-xk2lp\nFATAL: env var DATABASE_URL is required\nexit code 1")

# ====================================================================================== reasoning
H("reasoning", "en", "A farmer has 17 sheep; all but 9 run away. How many are left? Walk me through it so I see the trick.")
H("reasoning", "en", "I need to visit the bank (closes 4pm), the post office (closes 6pm) and the gym (open till 10). I'm free from 3:30 and each errand takes 40 minutes plus 15 minutes of travel between places. What order works, and is it even feasible?")
H("reasoning", "en", "We invested 10k at 6% compounded annually. After how many whole years does it first exceed 20k? Derive it rather than guessing.",
  system="You are a careful quantitative assistant. Show intermediate steps.")
H("reasoning", "en", "Goal: ship the billing export feature by Friday. Known: backend endpoint half done, no UI yet, QA needs a day. Produce the plan for the remaining days, flag what could slip, and say what you would cut first.",
  system="You are the planning module of a software agent. Output a numbered plan followed by a risk list.")
H("reasoning", "en", "Tool result: {\"hotels\": []}. The user wanted a hotel in Porto under 90 EUR for 12-14 June. Decide the next action: widen the budget, change dates, look at neighbouring towns, or ask the user? Justify the choice.",
  system="You are the controller of a travel-booking agent. Think before acting.")
H("reasoning", "en", "If every manager in our company is an engineer, and no engineer works in sales, can a sales person be a manager? Reason formally.")
H("reasoning", "en", "Our A/B test: variant B had 1,040 conversions out of 20,000 visitors, control had 980 out of 20,000. Is B really better or could this be noise? Work through the significance.")
H("reasoning", "en", "Two envelopes, one holds twice what the other holds. You open one and see 100 dollars. Should you switch? Explain where the usual argument goes wrong.")
H("reasoning", "en", "We run 3 replicas, each handles 400 rps at 70% CPU. Black Friday traffic is forecast at 3,100 rps. How many replicas do we need with 30% headroom? Show the calculation.")
H("reasoning", "en", "Monty Hall but with 4 doors and the host opens 2 empty ones: should I switch, and what's my win probability if I do?")
H("reasoning", "en", "Which argument is stronger for a 12-person startup — building auth in-house or buying Auth0 — given we need SSO in 3 months and have one backend dev? Think through costs and risks and land on a recommendation.")
H("reasoning", "en", "The test suite got slower from 4 to 11 minutes over the last 20 merges. Nothing obvious changed in CI. Form hypotheses, rank them by likelihood and propose the cheapest experiment to tell them apart.")
H("reasoning", "en", "x and y are positive integers with x*y = 360 and x - y = 18. Find them and verify.")
H("reasoning", "en", "Critique this plan step by step and find the logical gap: 'Sales dropped after we raised prices, so lowering prices back will restore sales to last year's level.'")
H("reasoning", "en", "A clock shows 3:15. What's the angle between the hour and minute hands? Reason it out.")
H("reasoning", "en", "okay so given what the search returned, what's the smartest next step? we still don't know the supplier's lead time",
  history=["Find me suppliers for 5,000 aluminium water bottles with a logo.", "I searched and found three candidates: Alutech (MOQ 3,000), BottleCo (MOQ 10,000) and Kanpur Metals (no MOQ listed)."])
H("reasoning", "en", "Is it possible to tile an 8x8 chessboard with two opposite corners removed using 2x1 dominoes? Prove it.")
H("reasoning", "en", "Our support queue gets 600 tickets a day, an agent resolves 45 per day, and we want the backlog of 900 cleared within a week while keeping up with inflow. How many agents, minimum? Show your work.")
H("reasoning", "en", "Decide whether we should roll back release 5.2 or hotfix forward. Facts: 2% of checkouts fail, the fix is a one-line change but untested, rollback takes 20 minutes and drops a migration. Reason about the risks of each path.")
H("reasoning", "en", "Given the constraints (budget 2,000, must include flights, 5 nights, two people), evaluate Lisbon vs Kraków vs Naples and pick one with a justification.")
H("reasoning", "en", "Let's think about this carefully: a lily pad doubles every day and covers the lake on day 48. On which day does it cover a quarter of the lake?")
H("reasoning", "en", "There are 3 switches outside a closed room, one controls the bulb inside. You can enter the room once. How do you identify the right switch? Explain the reasoning.")
H("reasoning", "en", "Sequence: 2, 6, 12, 20, 30, ... what's the 10th term, and can you justify the general formula?")
H("reasoning", "en", "Plan the order of operations for migrating 40 microservices from Heroku to Kubernetes with zero downtime. Identify the dependencies, the ordering principle, and the rollback points.",
  system="You are a senior architect. Reason step by step before answering.")
H("reasoning", "en", "Three friends split a bill: Ana paid 45, Ben paid 30, Chen paid nothing. Total was 75, shared equally. Who owes whom how much? Figure it out.")
H("reasoning", "en", "Is the following deduction valid? 'If it rains the match is cancelled. The match was cancelled. Therefore it rained.' Explain with reference to logical form.")
H("reasoning", "en", "Reflect on your previous attempt: the unit conversion gave 3.6 km but the expected answer is 3,600 m, and the checker rejected it. Diagnose what went wrong in the reasoning and decide how to proceed.",
  system="You are the self-critique step in an agent loop.")
H("reasoning", "en", "Estimate the number of golf balls that fit in a school bus. Lay out your assumptions and the arithmetic.")
H("reasoning", "de", "Drei Kisten, eine enthält Gold. Der Moderator öffnet eine leere. Soll ich wechseln? Begründe die Antwort mit Wahrscheinlichkeiten.")
H("reasoning", "de", "Wir haben 18 Monate Runway und verbrennen 120.000 Euro pro Monat. Wenn wir 4 Leute einstellen (je 7.000 Euro im Monat), wie lange reicht das Geld dann noch? Rechne es nachvollziehbar vor.")
H("reasoning", "de", "Entscheide mit Begründung: Sollen wir die Datenbank jetzt migrieren oder erst nach dem Release? Bedenke Risiko, Aufwand und Kundenauswirkung.")
H("reasoning", "fr", "Un escargot monte de 5 m le jour et redescend de 4 m la nuit dans un puits de 20 m. Au bout de combien de jours sort-il ? Explique ton raisonnement.")
H("reasoning", "fr", "Nous devons choisir entre deux fournisseurs : l'un moins cher mais livre en 6 semaines, l'autre 15 % plus cher mais livre en 10 jours. Le lancement est dans un mois. Analyse et tranche.")
H("reasoning", "fr", "Démontre que la racine carrée de 2 est irrationnelle, étape par étape.")
H("reasoning", "es", "Si un grifo llena una piscina en 6 horas y un desagüe la vacía en 9, ¿cuánto tarda en llenarse con ambos abiertos? Razónalo.")
H("reasoning", "es", "Objetivo del agente: conseguir tres presupuestos de reformas antes del viernes. Ya tenemos uno. Planifica los siguientes pasos y decide qué hacer si nadie responde.",
  system="Eres el planificador de un agente autónomo.")
H("reasoning", "es", "¿Qué es más probable: sacar dos seises con dos dados o al menos un seis con cuatro dados? Justifica el cálculo.")
H("reasoning", "pt", "Uma loja dá 30% de desconto e depois mais 20% sobre o preço já descontado. Isso equivale a 50% de desconto? Prove.")
H("reasoning", "pt", "Analise os prós e contras de abrir a segunda filial agora ou esperar um ano, dado que a primeira loja só deu lucro nos últimos 4 meses. Recomende uma opção.")
H("reasoning", "it", "Se 4 pittori dipingono una casa in 6 giorni, quanti giorni servono a 3 pittori? Spiega il ragionamento.")
H("reasoning", "it", "Valuta se conviene affittare o comprare casa con un mutuo al 4% per 25 anni e un affitto di 900 euro al mese. Ragiona sui numeri e concludi.")
H("reasoning", "nl", "Een trein vertrekt om 9:10 en rijdt 120 km/u, een tweede vertrekt om 9:40 met 160 km/u. Wanneer haalt de tweede de eerste in? Leg stap voor stap uit.")
H("reasoning", "nl", "Bedenk een plan om onze cloudkosten met 25% te verlagen en rangschik de maatregelen op impact versus risico.")
H("reasoning", "pl", "Rozwiąż krok po kroku: suma trzech kolejnych liczb parzystych wynosi 78. Jakie to liczby?")
H("reasoning", "ja", "5人の労働者が10日で終える仕事を、8人なら何日で終えられますか？手順を追って説明してください。")
H("reasoning", "zh", "一个水池，甲管6小时注满，乙管8小时注满，两管同时开需要几小时？请一步一步推理。")
H("reasoning", "ru", "В классе 30 учеников, 18 изучают английский, 15 — немецкий, 5 не изучают ни одного. Сколько изучают оба языка? Объясни решение.")

# ====================================================================================== code
H("code", "en", f"pandas question: this returns the customers in random order instead of biggest first, why?\n\n{PY_BUG}")
H("code", "en", f"My profile page shows 'undefined' for the name. Here's the function:\n{JS_BUG}\nWhat am I missing?")
H("code", "en", f"rustc says 'missing lifetime specifier' on this:\n{RS_SNIP}\nhow do I annotate it?")
H("code", "en", f"Rewrite this function so that total() returns a BigDecimal and handles an empty list:\n{KT_SNIP}")
H("code", "en", f"Turn this LINQ chain into a plain loop and tell me which one is faster:\n{CS_SNIP}")
H("code", "en", f"{DJ_TRACE}\n\nThis happens only for new users. Patch the view so it doesn't crash.",
  system="You are a coding agent with access to the repository. Reply with a minimal diff.")
H("code", "en", f"{NODE_TRACE}\n\nthe app runs in docker compose, postgres is another service. what's wrong with my connection string?")
H("code", "en", f"{K8S_LOG}\n\nHow should I wire the secret into the deployment manifest?")
H("code", "en", "Implement a function in Go that splits a slice into chunks of size n, with tests.")
H("code", "en", "Need a TypeScript type that makes every nested property of an object optional. DeepPartial or something?")
H("code", "en", "Write a Postgres query returning, for each month of 2023, the number of distinct users who placed at least two orders.")
H("code", "en", "What's the difference between `Arc<Mutex<T>>` and `RwLock` in Rust and when should I pick one? Show a small example.")
H("code", "en", "Create a GitHub Actions workflow that runs cargo test on push and caches the target directory.")
H("code", "en", "Write a Python script that watches a folder and uploads any new PDF to S3.")
H("code", "en", "how do i squash my last 3 commits into one")
H("code", "en", "Give me the nginx config to reverse proxy /api to localhost:3000 with websockets enabled.")
H("code", "en", "Can you code-review this? def is_even(n): return True if n % 2 == 0 else False")
H("code", "en", "Refactor the following so it uses a context manager:\nf = open('data.txt')\nlines = f.readlines()\nf.close()")
H("code", "en", "Write a Jest test for a React hook that fetches todos and exposes loading/error state.")
H("code", "en", "my makefile says 'missing separator. Stop.' on line 4, what does that mean")
H("code", "en", "Translate this Python list comprehension to idiomatic Rust iterators: [x*x for x in nums if x % 3 == 0]")
H("code", "en", "Write a function that checks whether a Sudoku board is valid. Any language, prefer Python.")
H("code", "en", "The build fails with `error: linking with cc failed: exit status: 1 ... undefined reference to `SSL_CTX_new'`. I'm on Debian. Fix?")
H("code", "en", "Explain what this regex does: ^(?=.*[A-Z])(?=.*\\d)[A-Za-z\\d@$!%*?&]{8,}$")
H("code", "en", "Here's the failing test output, make it pass:\nFAILED tests/test_cart.py::test_discount - AssertionError: assert 90.0 == 81.0",
  history=["Add a 10% loyalty discount to the cart total.", "Done: I multiply the subtotal by 0.9 in apply_discounts()."])
H("code", "en", "Now add input validation to that endpoint and return 422 on bad payloads",
  history=["Write a FastAPI endpoint that creates a user.", "Here is the endpoint: @app.post('/users') ..."])
H("code", "en", "Optimize this SQL, it takes 40 seconds: SELECT * FROM events WHERE DATE(created_at) = '2024-05-01' AND user_id IN (SELECT id FROM users WHERE country='FR')")
H("code", "en", "Write a Kotlin coroutine that polls an endpoint every 5 seconds until it returns status DONE, with a 2 minute timeout.")
H("code", "en", "Generate a Terraform module for an S3 bucket with versioning and a lifecycle rule that deletes objects after 90 days.")
H("code", "de", f"Warum gibt diese Funktion die Kunden nicht sortiert zurück?\n{PY_BUG}")
H("code", "de", "Schreibe ein Bash-Skript, das alle Docker-Container stoppt, die älter als 24 Stunden sind.")
H("code", "de", f"Ich bekomme diesen Fehler beim Start:\n{NODE_TRACE}\nWas muss ich in der docker-compose.yml ändern?")
H("code", "fr", "Écris une fonction Rust qui lit un fichier ligne par ligne et compte les mots, avec gestion des erreurs.")
H("code", "fr", f"Ce code ne compile pas, pourquoi ?\n{RS_SNIP}")
H("code", "fr", "Comment faire une requête HTTP POST avec fetch en JavaScript en envoyant du JSON ?")
H("code", "es", f"Arregla esta función, el nombre sale como undefined:\n{JS_BUG}")
H("code", "es", "Escribe una consulta SQL que devuelva los 10 productos más vendidos del último mes.")
H("code", "es", f"Tengo este error en producción:\n{DJ_TRACE}\n¿Cómo lo soluciono?")
H("code", "pt", "Escreva uma função em Python que valide um CPF brasileiro.")
H("code", "pt", f"O pod fica reiniciando:\n{K8S_LOG}\nComo configuro a variável de ambiente no deployment?")
H("code", "it", "Scrivi uno script Python che legge un CSV e calcola la media di ogni colonna numerica.")
H("code", "it", f"Refactoring di questa classe Kotlin per renderla immutabile:\n{KT_SNIP}")
H("code", "nl", "Schrijf een unittest in pytest voor een functie die btw berekent over een bedrag.")
H("code", "pl", "Napisz funkcję w JavaScript, która usuwa duplikaty z tablicy obiektów po polu id.")
H("code", "ja", "PythonでCSVファイルを読み込んで、列ごとの平均を計算するコードを書いてください。")
H("code", "zh", "这段代码为什么报错？\nfn main() { let s = String::from(\"hi\"); let t = s; println!(\"{}\", s); }")
H("code", "ru", "Напиши функцию на Python, которая проверяет, является ли строка палиндромом.")

# ====================================================================================== creative
H("creative", "en", "Write a short poem from the perspective of a houseplant that is slowly being overwatered.")
H("creative", "en", "Give me a spooky two-sentence horror story set in a coworking space.")
H("creative", "en", "Come up with a name and tagline for a bakery that only sells sourdough.")
H("creative", "en", "Write a sonnet about the last train home on a Friday night.")
H("creative", "en", "Pitch me a Pixar-style movie about a lonely satellite.")
H("creative", "en", "Write a wedding speech for my best friend Tom, who once drove 600 km to return my wallet. Make it warm and a little funny.")
H("creative", "en", "Invent a new holiday and describe how people celebrate it.")
H("creative", "en", "Write a rap verse about debugging at 3am.")
H("creative", "en", "Describe a sunrise over a desert without using the words 'sun', 'light' or 'gold'.")
H("creative", "en", "Write a scene where two old rivals meet again at a chess tournament, 500 words, with subtext.")
H("creative", "en", "I need 5 ideas for a fantasy world's magic system that costs the user memories.")
H("creative", "en", "Create a children's rhyme to help kids remember the planets.")
H("creative", "en", "Write an epic ballad about our office coffee machine breaking down.")
H("creative", "en", "Generate a menu of fictional dishes for a restaurant on Mars, with whimsical descriptions.")
H("creative", "en", "Write a letter from a medieval knight complaining about modern traffic.")
H("creative", "en", "Write a fairy tale where the wolf is the hero.", system="You are a storyteller for a kids' app. Keep it gentle.")
H("creative", "en", "Can you make up lyrics for a lullaby about sleepy whales?")
H("creative", "en", "Write a microfiction (under 100 words) titled 'The Last Password'.")
H("creative", "en", "Brainstorm witty names for our internal hackathon team that builds an AI gateway.")
H("creative", "en", "Write a ghost story in the form of a series of Slack messages.")
H("creative", "en", "now write a short poem about it", history=["What is the Doppler effect?", "It's the change in frequency of a wave relative to an observer moving relative to the source..."])
H("creative", "en", "write an ad jingle for a bike repair shop called Spoke & Chain")
H("creative", "en", "Create a villain monologue for a tabletop campaign; the villain is a bureaucrat who controls time.")
H("creative", "en", "Imagine you are a cat writing a review of your human's apartment. Go.")
H("creative", "en", "Write the first chapter outline of a cozy mystery set in a Cornish fishing village.")
H("creative", "en", "Give me a motivational poem for a marathon runner at kilometre 35.")
H("creative", "en", "Compose a toast for my parents' 40th anniversary.", system="You are a helpful assistant.")
H("creative", "de", "Schreib ein Gedicht über einen verregneten Sonntag in Hamburg.")
H("creative", "de", "Erfinde eine kurze Geschichte über einen Igel, der Astronaut werden will.")
H("creative", "de", "Denk dir fünf kreative Namen für ein veganes Café in Leipzig aus.")
H("creative", "fr", "Écris un conte pour enfants sur un nuage qui avait peur de pleuvoir.")
H("creative", "fr", "Compose une chanson sur les vacances d'été en Bretagne.")
H("creative", "fr", "Invente un slogan accrocheur pour une marque de vélos électriques.")
H("creative", "es", "Escribe un microrrelato de terror que ocurra en un ascensor.")
H("creative", "es", "Crea una poesía sobre el mar de Cádiz al atardecer.")
H("creative", "es", "Inventa un personaje para una novela de fantasía: una bruja que odia la magia.")
H("creative", "pt", "Escreva um poema sobre saudade e o cheiro de café da avó.")
H("creative", "pt", "Crie uma história curta sobre um robô que aprende a sambar.")
H("creative", "it", "Scrivi una filastrocca sulle stagioni per bambini.")
H("creative", "it", "Inventa una storia d'amore ambientata in una gelateria di Napoli.")
H("creative", "nl", "Schrijf een grappig gedicht over fietsen in de regen.")
H("creative", "pl", "Napisz krótkie opowiadanie o smoku, który boi się ciemności.")
H("creative", "ja", "桜の季節についての短い詩を書いてください。")
H("creative", "zh", "写一首关于秋天的小诗。")
H("creative", "ru", "Напиши короткое стихотворение о зимнем утре.")

# ====================================================================================== rewrite
H("rewrite", "en", "Can you make this sound less passive-aggressive? 'Per my last email, the numbers were already in the attachment.'")
H("rewrite", "en", "Tighten this paragraph for our landing page, same meaning, fewer words:\nOur platform is a platform that helps teams to be able to collaborate more effectively and efficiently on all of their various projects across the board.")
H("rewrite", "en", "Please rephrase this apology to a customer so it sounds sincere, not robotic:\n'We apologize for any inconvenience this may have caused. Your issue has been noted.'",
  system="You are the support assistant for ParcelPoint. Always keep the company's friendly voice.")
H("rewrite", "en", f"Rewrite this policy section in plain language a teenager would understand:\n{PRIVACY}")
H("rewrite", "en", "correct my english pls: 'Yesterday I have went to the doctor and he said me that I must to rest.'")
H("rewrite", "en", "Rewrite this bio in the third person:\n'I'm a product designer with ten years of experience. I love typography and I run a small pottery studio on weekends.'")
H("rewrite", "en", "Make my resignation email more gracious:\n'I quit. Last day is the 30th. Thanks.'")
H("rewrite", "en", "Turn this dense sentence into two or three shorter ones: 'The committee, having considered the proposal in light of the budgetary constraints that were outlined in the previous meeting and the feedback of stakeholders, decided to defer the decision.'")
H("rewrite", "en", "Give this tweet more punch without changing the facts: 'We released version 3 of our app today. It is faster.'")
H("rewrite", "en", f"Rewrite these retro notes as a neutral, blameless write-up:\n{RETRO}")
H("rewrite", "en", "Rewrite the following job ad to be gender-neutral and more inclusive:\n'We're looking for a rockstar developer who can hit the ground running. He will work long hours.'")
H("rewrite", "en", "Rephrase: 'Due to the fact that the server was down, we were unable to process the orders.'")
H("rewrite", "en", "Make this error message friendlier for end users: 'ERR_PAYMENT_DECLINED: transaction rejected by issuer.'")
H("rewrite", "en", "Edit for clarity and flow, keep my voice:\nSo basically the thing is that we kind of need more time because the data is not really ready and also the team is small.")
H("rewrite", "en", "hmm, could that sound a bit more businesslike? it goes to the property management company", history=["Write a note telling my landlord the sink is leaking.", "Hey! The kitchen sink's leaking again, can someone come by this week? Thanks!"])
H("rewrite", "en", "can you shorten that to one tweet-length sentence, same tone",
  history=["Draft an announcement that our office moves to Canal Street on 3 June.", "We're excited to share that from 3 June our team will be working from our new office at 45 Canal Street..."])
H("rewrite", "en", "Reword these three bullet points so they are parallel in structure:\n- Improving onboarding\n- We reduced churn\n- To launch in Spain")
H("rewrite", "en", "Rewrite this review to remove the profanity but keep the criticism: 'The damn app crashes every bloody time I open the camera.'")
H("rewrite", "en", "Change this text from American to British spelling and idiom: 'The color of the elevator in our apartment building is gray.'")
H("rewrite", "en", "Rewrite this paragraph in a more academic register:\nLots of people think social media makes teens sad, but the research is kind of mixed on that.")
H("rewrite", "en", "Here's my cover letter opening. Make it less generic:\n'I am writing to apply for the position at your esteemed company. I am a hard worker.'")
H("rewrite", "en", "Make this Slack announcement sound more upbeat: 'Reminder: timesheets are due Friday. Late ones won't be processed.'")
H("rewrite", "en", "Paraphrase this so it doesn't trigger plagiarism checks but keeps the meaning: 'Slow-wave sleep may help consolidate declarative memories.'")
H("rewrite", "en", "Rewrite in active voice: 'The report was written by the intern and was reviewed by nobody.'")
H("rewrite", "de", "Formuliere diese E-Mail freundlicher: 'Ihre Rechnung ist seit drei Wochen überfällig. Zahlen Sie sofort.'")
H("rewrite", "de", "Korrigiere bitte meinen Text: 'Gestern ich bin mit die Freunde ins Kino gegangen und wir haben viel gelacht gehabt.'")
H("rewrite", "de", f"Schreib diesen Absatz einfacher, in leichter Sprache:\n{DE_DOC}")
H("rewrite", "fr", "Reformule cette phrase pour qu'elle soit plus élégante : 'On a fait une réunion et on a décidé des trucs pour le projet.'")
H("rewrite", "fr", "Corrige l'orthographe et la grammaire : 'Je suis aller au magasin et j'ai acheter des pomme.'")
H("rewrite", "fr", "Rends ce message plus diplomatique : 'Votre proposition est nulle, on ne la retiendra pas.'")
H("rewrite", "es", "Reescribe este mensaje para que suene más cercano: 'Le informamos que su solicitud ha sido tramitada.'")
H("rewrite", "es", "Corrige los errores de este texto: 'Ayer fuimos ha la playa y havia mucha gente.'")
H("rewrite", "es", f"Acorta esta reseña a la mitad sin perder lo importante, y mantén el estilo:\n{ES_DOC}")
H("rewrite", "pt", "Reescreva de forma mais profissional: 'oi, vc pode me mandar o relatório hj? preciso urgente'")
H("rewrite", "pt", "Corrija a gramática: 'Nós vai viajar amanhã e ela não sabe de nada.'")
H("rewrite", "it", "Riformula questa frase in modo più formale: 'Ciao, mi serve la fattura entro domani, grazie.'")
H("rewrite", "it", "Correggi gli errori: 'Ieri sono andato al mare con i miei amici e abbiamo fatto il bagnio.'")
H("rewrite", "nl", "Herschrijf deze zin zodat hij beleefder klinkt: 'Stuur me nu die offerte.'")
H("rewrite", "pl", "Popraw ten tekst, żeby brzmiał bardziej profesjonalnie: 'hej, kiedy w końcu dostanę tą fakturę?'")
H("rewrite", "ja", "この文章をもっと丁寧な敬語に書き直してください：「明日の会議、来れる？」")
H("rewrite", "zh", "请把这句话改写得更正式一些：“这个方案不行，重做吧。”")
H("rewrite", "ru", "Перепиши это письмо более вежливо: «Где мой заказ? Уже неделю жду.»")

# ====================================================================================== chat
H("chat", "en", "hey there 👋")
H("chat", "en", "good evening! long day at work, just wanted to talk to someone")
H("chat", "en", "What's the weather usually like in Lisbon in April?")
H("chat", "en", "Do you have a favourite season? Mine is autumn.")
H("chat", "en", "Where can I see my invoices in the dashboard?", system="You are the in-app helper of Ledgerly, an invoicing tool. Answer briefly.")
H("chat", "en", "I was charged but my plan still says Free. Can you check?", system="You are Milo, support agent for a streaming service. Be empathetic.")
H("chat", "en", "Is there a student discount?", system="You are the sales assistant for CodeCamp Online.")
H("chat", "en", "thank you so much, you've been a great help!")
H("chat", "en", "Who won the football World Cup in 2010?")
H("chat", "en", "what's the tallest mountain in Africa")
H("chat", "en", "Got any weekend plans? I'm thinking of going hiking.")
H("chat", "en", "Can you recommend a podcast for my commute? I like true crime.")
H("chat", "en", "I'm nervous about my exam tomorrow.")
H("chat", "en", "Are you able to remember what I told you yesterday?")
H("chat", "en", "how many languages do you speak?")
H("chat", "en", "haha okay, good to know! anything else interesting?", history=["Tell me something about sloths.", "Sloths can hold their breath for up to 40 minutes underwater."])
H("chat", "en", "cool, thanks. have a good one", history=["How do I export my contacts?", "Go to Settings > Contacts > Export and choose CSV."])
H("chat", "en", "What's the difference between a crocodile and an alligator?")
H("chat", "en", "Which country has the most islands?")
H("chat", "en", "What should I cook tonight? I have eggs, spinach and some feta.")
H("chat", "en", "Can I change the email on my account?", system="You are the support bot for Pixelbox, a photo storage app.")
H("chat", "en", "Do you ever get tired of answering questions?")
H("chat", "en", "my cat just knocked my coffee over lol")
H("chat", "en", "What's a good stretch for lower back pain after sitting all day?")
H("chat", "en", "When does daylight saving time end in Europe this year?")
H("chat", "en", "what's your name?")
H("chat", "en", "Is Pluto a planet or not? I lost track.")
H("chat", "en", "I just finished reading Dune, loved it. What should I read next?")
H("chat", "de", "Hi! Wie war dein Tag?")
H("chat", "de", "Kannst du mir einen guten Krimi empfehlen?")
H("chat", "de", "Wie ändere ich meine Lieferadresse?", system="Du bist der Kundenservice-Bot von Versandhaus Nord.")
H("chat", "de", "Vielen Dank für die Hilfe, bis bald!")
H("chat", "fr", "Coucou, tu fais quoi de beau ?")
H("chat", "fr", "Quelle est la capitale de l'Australie ?")
H("chat", "fr", "Je n'arrive pas à me connecter à mon compte, vous pouvez m'aider ?", system="Tu es l'assistant du service client d'Ecoshop.")
H("chat", "fr", "Merci, c'est super gentil !")
H("chat", "es", "Buenas, ¿cómo va todo?")
H("chat", "es", "¿Qué me recomiendas visitar en Sevilla?")
H("chat", "es", "¿Dónde está mi pedido? Lo compré hace una semana.", system="Eres el asistente de atención al cliente de TiendaYa.")
H("chat", "pt", "Olá! Tudo bem com você?")
H("chat", "pt", "Qual é a melhor época para visitar o Nordeste?")
H("chat", "it", "Ciao! Che mi racconti?")
H("chat", "it", "Come faccio a cambiare la password del mio account?")
H("chat", "nl", "Hoi, hoe gaat het met je?")
H("chat", "pl", "Cześć! Co u ciebie słychać?")
H("chat", "ja", "こんにちは！今日はいい天気ですね。")
H("chat", "zh", "你好，你今天过得怎么样？")
H("chat", "ru", "Привет! Как дела?")

# ====================================================================================== extraction
H("extraction", "en", f"From the transcript below, return JSON with order_id, customer_email, resolution (refund|replacement|none).\n\n{TRANSCRIPT}")
H("extraction", "en", f"{JOBPOST}\n\nOutput a JSON object: {{\"title\", \"location\", \"salary_min\", \"salary_max\", \"currency\", \"deadline\", \"must_have\": []}}",
  system="You are an extraction service. Reply with JSON only.")
H("extraction", "en", f"Identify every number in this article and what it refers to, as a list of {{value, meaning}} objects:\n{PORT}")
H("extraction", "en", f"Pull the action items from these notes into a JSON array with owner, action and due date.\n{RETRO}")
H("extraction", "en", f"Read the policy and give me the retention periods per data type as key-value pairs:\n{PRIVACY}")
H("extraction", "en", "Extract the merchant, total and VAT from this receipt text: 'CAFE LUNA  Via Roma 12  2x Cappuccino 5.00  1x Cornetto 1.50  TOTALE EUR 6.50  IVA 10% 0.59  12/03/2024 08:41'")
H("extraction", "en", "Parse this address into street, number, postcode, city, country: 'Kastanienallee 77, 10435 Berlin, Germany'")
H("extraction", "en", "Here are three reviews. For each, give sentiment (pos/neg/mixed) and the main complaint if any, as JSON.\n1. 'Battery lasts forever, screen is dim.'\n2. 'Stopped working after a week.'\n3. 'Perfect, exactly as described.'")
H("extraction", "en", "Which programming languages, frameworks and cloud providers are mentioned in this CV snippet? 'Built data pipelines in Scala on Spark, deployed on AWS EMR; frontend in Vue; some Azure Functions.' Return arrays.")
H("extraction", "en", f"Summarize and extract the dates as JSON from this retro: keep only {{\"date\", \"what\"}} items.\n{RETRO}")
H("extraction", "en", "Classify this ticket into one of [billing, bug, feature_request, account] and extract the product area. Ticket: 'Export to PDF cuts off the last column in the reports module.'",
  system="Return {\"category\": ..., \"area\": ...} and nothing else.")
H("extraction", "en", "Get the flight number, departure time and gate from this SMS: 'Your flight LH 1234 to Munich departs 18:45 from gate B22. Boarding 18:05.'")
H("extraction", "en", "From the email thread, list all meeting times proposed and who proposed them, as a table.\n\nAnna: could we do Tue 10:00?\nRaj: Tue doesn't work, Wed 14:30?\nAnna: Wed is fine, or Thu 9:00 as backup.")
H("extraction", "en", f"Extract structured facts from this abstract: sample size, intervention, effect size, limitations.\n{SLEEP}")
H("extraction", "en", "Find all URLs and email addresses in this text and return them as two lists: 'Docs at https://docs.kiwi.dev, support at help@kiwi.dev, status page status.kiwi.dev, sales: sales@kiwi.dev'")
H("extraction", "en", "Tool output follows. Map it to the schema {name: str, price_eur: float, in_stock: bool}[].\n<html><li>Blue Mug — €12,50 — available</li><li>Red Mug — €11,00 — sold out</li></html>",
  system="You are the extraction step of a shopping agent. Output strict JSON.")
H("extraction", "en", "What's the invoice number, due date and total? 'INVOICE INV-2291 | Issued 02/05/2024 | Due 01/06/2024 | Subtotal 1,200.00 | VAT 20% 240.00 | Total 1,440.00 GBP'")
H("extraction", "en", "For each person mentioned, give name and job title as JSON: 'Dr. Amara Osei, head of cardiology, met with hospital CFO Peter Lindqvist and nurse manager Rosa Díaz.'")
H("extraction", "en", "Label each entity in the sentence with PER, ORG, LOC, DATE: 'On 4 July 2023, Elena Petrova joined Siemens in Munich.'")
H("extraction", "en", "now pull out every price and quantity from it as JSON", history=["Here's our supplier quote, can you read it? '500 units of M8 bolts at 0.12 each, 200 washers at 0.03, delivery 45 EUR'", "Sure, I've read the quote. It lists bolts, washers and a delivery fee."])
H("extraction", "en", "Is the customer asking for a refund, an exchange or information? Extract the intent and the order number. Message: 'Hi, order 55-1032 arrived in the wrong size, can I swap it for an M?'")
H("extraction", "en", "Extract key-value pairs from this log line: ts=2024-06-01T12:03:44Z level=error svc=payments msg=\"timeout calling bank\" latency_ms=5012 retry=2")
H("extraction", "en", "From the contract excerpt, extract the notice period, the payment terms and the governing law. If absent say null.\n'Either party may end this agreement with sixty days' notice. Invoices are payable within 45 days. This agreement is governed by the laws of Ireland.'")
H("extraction", "de", f"Extrahiere alle Zahlen mit ihrer Bedeutung als JSON:\n{DE_DOC}")
H("extraction", "de", "Lies die folgende Nachricht und gib mir Name, Telefonnummer und Wunschtermin als JSON: 'Hallo, hier ist Jens Bauer, 0171 2233445, ich hätte gern einen Termin am Freitag um 11 Uhr.'")
H("extraction", "de", "Ordne dieses Ticket einer Kategorie zu (Rechnung, Technik, Konto) und gib die Kundennummer zurück: 'Kundennr. 88123 – ich kann mich seit gestern nicht mehr einloggen.'")
H("extraction", "fr", f"Extrais les dates, le lieu et le prix des billets au format JSON :\n{FR_DOC}")
H("extraction", "fr", "Récupère le nom, l'adresse e-mail et le numéro de commande dans ce message : 'Bonjour, c'est Claire Martin (claire.m@orange.fr), commande 4471, le colis est abîmé.'")
H("extraction", "fr", "Identifie toutes les personnes et organisations mentionnées : 'Hier, Sophie Leroy, directrice de Renault, a rencontré le maire de Lyon.'")
H("extraction", "es", f"Extrae en JSON: platos pedidos, precio por persona, tiempo de espera y puntos negativos.\n{ES_DOC}")
H("extraction", "es", "Saca el importe, la fecha y el concepto de este SMS bancario: 'Cargo de 54,20 EUR en MERCADONA el 12/03. Saldo disponible 1.203,11 EUR.'")
H("extraction", "es", "Clasifica el sentimiento (positivo, negativo, neutro) y extrae el producto: 'La freidora de aire Cosori es una maravilla, la uso a diario.'")
H("extraction", "pt", f"Extraia os números e o que eles significam em formato JSON:\n{PT_DOC}")
H("extraction", "pt", "Pegue o nome, CPF e e-mail desta mensagem: 'Sou Marcos Lima, CPF 123.456.789-00, email marcos.lima@uol.com.br.'")
H("extraction", "it", "Estrai mittente, data di scadenza e importo da questa email: 'Gentile cliente, la fattura n. 301 di 250 euro scade il 30 aprile. Cordiali saluti, Enel Energia.'")
H("extraction", "it", "Elenca in JSON tutte le città e le date citate: 'Partiremo da Torino il 3 maggio, poi Firenze il 6 e Roma il 9.'")
H("extraction", "nl", "Haal de naam, het bedrag en de vervaldatum uit deze tekst als JSON: 'Factuur voor Pieter de Vries, totaal 320 euro, te betalen voor 15 maart.'")
H("extraction", "pl", "Wyciągnij z tekstu imię, nazwisko i numer telefonu w formacie JSON: 'Nazywam się Anna Kowalska, mój numer to 600 700 800.'")
H("extraction", "ja", "次の文から日付と場所と人数をJSONで抽出してください：「6月10日に大阪で30人の研修を行います。」")
H("extraction", "zh", "请从以下文本中提取姓名、电话和地址，输出JSON：“张伟，电话13812345678，住在上海市浦东新区。”")
H("extraction", "ru", "Извлеки из текста дату, сумму и получателя в формате JSON: «15 мая перевёл 5000 рублей Ивану Петрову».")

# ====================================================================================== summarize
H("summarize", "en", f"Give me the gist of this in two lines:\n{PORT}")
H("summarize", "en", f"{SLEEP}\n\nWhat's the bottom line here, in plain words?")
H("summarize", "en", f"Recap this support conversation for the next agent in 2-3 sentences:\n{TRANSCRIPT}",
  system="You write handover notes for support agents.")
H("summarize", "en", f"Short version of this retro for the leadership channel, please:\n{RETRO}")
H("summarize", "en", f"Digest this privacy section into three bullet points for our FAQ:\n{PRIVACY}")
H("summarize", "en", f"Retrieved context:\n<doc id=1>{PORT}</doc>\n<doc id=2>Freight rates on Asia-Europe routes rose 6% this week as carriers reroute around congested hubs.</doc>\n\nQuestion: What's going on with European shipping right now? Synthesize the documents.",
  system="Answer using only the retrieved documents. Cite doc ids.")
H("summarize", "en", f"I don't have time to read this job ad. What's it about, in one paragraph?\n{JOBPOST}")
H("summarize", "en", "Summarize the discussion so far in bullet points so I can paste it into the ticket.", history=[
    "Our checkout fails for some Safari users.", "It could be the third-party cookie restriction affecting the payment iframe.",
    "We only see it on iOS 17.", "Then ITP changes in iOS 17 are likely; test with the storage access API."])
H("summarize", "en", "Condense this into a headline and a one-sentence standfirst: Scientists have discovered a new species of frog in the cloud forests of Ecuador. The frog, less than 2 cm long, has transparent skin on its belly. Researchers found it after three years of fieldwork and say it is already threatened by mining.")
H("summarize", "en", "what are the main takeaways from this? 'Q2: ARR up 22%, net retention 118%, burn down 30% after cutting two offices. Risks: one customer is 14% of revenue; EU pricing change pending. Plan: hire 3 AEs, launch usage-based pricing in Q3.'")
H("summarize", "en", "Please write a brief overview of the chapter I pasted earlier, focusing on the main argument.", history=[
    "I'm going to paste chapter 3 of my thesis. 'Chapter 3 argues that municipal broadband reduces the digital divide more than subsidies to private ISPs, based on data from 214 US counties between 2010 and 2020...'",
    "Got it, I've read chapter 3."])
H("summarize", "en", "Make a 3-bullet summary of yesterday's standup: Ana finished the CSV importer; Raj is blocked on API keys from the vendor; Li will pair with Raj today; release moved to Thursday.")
H("summarize", "en", "tl;dr? 'After months of debate, the town voted to convert the old railway line into a 12 km greenway. Construction will start in spring, costing 2.3 million, half of it from EU funds. Some farmers worry about access to their fields.'")
H("summarize", "en", "Sum up this PR description for the changelog: 'This PR replaces the home-grown retry loop with the backoff crate, adds jitter, caps retries at 5, and logs each attempt at debug level. No behaviour change for successful calls.'")
H("summarize", "en", "Write the abstract for this paper draft: we collected 10,000 app reviews, labelled them for feature requests, trained a classifier reaching 0.87 F1, and found that requests cluster around offline mode and export features.")
H("summarize", "en", "I pasted our incident timeline above. Give me a concise summary for the status page.", history=[
    "Timeline: 10:02 alerts fire for checkout errors; 10:09 on-call confirms DB CPU at 100%; 10:20 runaway query identified; 10:31 query killed and index added; 10:40 error rate normal.",
    "Thanks, I have the timeline."])
H("summarize", "en", "Can you boil down what these three customer emails have in common? 1) 'App logs me out constantly.' 2) 'Session ends after 5 min.' 3) 'I have to sign in every time I switch tabs.'")
H("summarize", "en", "Give me the key points of the Treaty of Westphalia in a few bullets, based on this excerpt: 'The Peace of Westphalia (1648) ended the Thirty Years' War, recognised the sovereignty of German states, confirmed Dutch and Swiss independence, and extended religious tolerance to Calvinists.'")
H("summarize", "en", "Summarize this Slack thread in one message: 'mike: deploy failed again / sara: it's the flaky migration test / mike: can we skip it? / sara: no, I'll fix the fixture today / lee: ok, deploy tomorrow then'")
H("summarize", "en", "Recap this chapter for a study guide: The French Revolution began in 1789 amid fiscal crisis and bread shortages. The Estates-General became the National Assembly, the Bastille fell, and feudal privileges were abolished. Radicalisation led to the Terror under Robespierre, which ended with his execution in 1794.")
H("summarize", "en", "what did the user ask for in this conversation, summarized in one sentence?", history=[
    "I want to book a table for 6 on Saturday, one person is vegan and we need a high chair.", "Sure, which time and area do you prefer?"])
H("summarize", "en", "Abstract this for a busy exec (max 40 words): our pilot with three hospitals cut discharge paperwork time from 45 to 12 minutes per patient, nurses rated the tool 4.5/5, and two hospitals want to extend the contract.")
H("summarize", "de", f"Fasse die Meldung in zwei Sätzen zusammen:\n{DE_DOC}")
H("summarize", "de", f"Worum geht es in diesem Artikel? Kurz bitte.\n{PORT}")
H("summarize", "de", "Gib mir die wichtigsten Punkte dieses Protokolls: Das Team hat die neue App-Version getestet, zwei kritische Fehler gefunden und den Release auf nächste Woche verschoben. Maria kümmert sich um die Fehlerbehebung.")
H("summarize", "fr", f"Résume cet article en trois points :\n{FR_DOC}")
H("summarize", "fr", f"Fais une synthèse courte de ce texte pour la newsletter :\n{SLEEP}")
H("summarize", "fr", "Peux-tu résumer cette discussion en une phrase ? 'Paul veut repousser la livraison, Julie pense qu'on peut tenir la date si on coupe la fonctionnalité export, le client n'a pas encore répondu.'")
H("summarize", "es", f"Resúmeme esta reseña en una línea:\n{ES_DOC}")
H("summarize", "es", f"Haz un resumen ejecutivo de este texto:\n{PORT}")
H("summarize", "es", "Resume los puntos clave de la reunión: se aprobó el presupuesto, se retrasa la campaña a junio y Laura coordinará con la agencia.")
H("summarize", "pt", f"Resuma esta notícia em duas frases:\n{PT_DOC}")
H("summarize", "pt", "Faça um resumo curto deste e-mail: 'Prezados, informamos que o escritório ficará fechado na sexta por manutenção elétrica. O atendimento será remoto. Voltamos normalmente na segunda.'")
H("summarize", "it", "Riassumi in poche righe: 'Il comune ha approvato il nuovo piano per le piste ciclabili, che prevede 25 km di percorsi entro il 2026 con un investimento di 8 milioni di euro.'")
H("summarize", "it", f"Fammi un riassunto di questo testo:\n{SLEEP}")
H("summarize", "nl", "Vat dit artikel samen in twee zinnen: 'De gemeente Utrecht gaat vanaf volgend jaar alle bussen elektrisch laten rijden. De overstap kost 40 miljoen euro en moet de luchtkwaliteit in het centrum verbeteren.'")
H("summarize", "pl", "Streść ten tekst w dwóch zdaniach: 'Firma ogłosiła, że od stycznia wprowadza czterodniowy tydzień pracy dla wszystkich pracowników. Pensje pozostaną bez zmian, a wyniki zostaną ocenione po pół roku.'")
H("summarize", "ja", "次の文章を一文で要約してください：「新しい図書館が来月駅前にオープンします。蔵書は20万冊で、カフェと子ども向けのスペースも併設されます。」")
H("summarize", "zh", "请用一句话总结这段话：“公司第三季度收入增长了15%，主要来自海外市场，但利润率因原材料成本上涨而下降。”")
H("summarize", "ru", "Кратко перескажи этот текст: «Городские власти объявили о ремонте главного моста. Работы продлятся полгода, движение транспорта будет ограничено.»")

# ====================================================================================== translation
H("translation", "en", "How would I say 'the meeting has been cancelled, sorry for the short notice' in German?")
H("translation", "en", f"Put this into English for our Berlin office newsletter:\n{DE_DOC}")
H("translation", "en", f"English version of this, please:\n{FR_DOC}")
H("translation", "en", "Render these app strings in Japanese, keeping the %s placeholders: {\"retry\": \"Try again\", \"greeting\": \"Welcome back, %s\", \"empty\": \"Nothing here yet\"}",
  system="You are the localization step of our CI pipeline. Output the same JSON with translated values only.")
H("translation", "en", "Translate this docstring into Spanish, keep the code as is:\ndef area(r):\n    \"\"\"Return the area of a circle with radius r.\"\"\"\n    return 3.14159 * r * r")
H("translation", "en", "What does 'Entschuldigung, wo ist die Toilette?' mean?")
H("translation", "en", "I need this sentence in Portuguese (Brazil) and in Portuguese (Portugal): 'Please keep your seatbelt fastened.'")
H("translation", "en", "Translate to French, informal 'tu' form: 'Do you want to grab a drink after work?'")
H("translation", "en", f"Our Madrid customer wrote this review; what does it say in English?\n{ES_DOC}")
H("translation", "en", "now in Italian please", history=["Translate 'Happy birthday, hope your day is wonderful' into Spanish.", "¡Feliz cumpleaños, espero que tengas un día maravilloso!"])
H("translation", "en", "Localize this marketing banner for Mexico (not Spain): 'Summer sale! Up to 50% off everything, this weekend only.'")
H("translation", "en", "Translate this SRT block to Dutch, timestamps unchanged:\n7\n00:01:12,400 --> 00:01:15,000\nWe have to leave before sunrise.")
H("translation", "en", "Can you translate the Korean on this label? '유통기한: 2025년 3월 1일까지'")
H("translation", "en", "Translate into Polish for our checkout page: 'Your card was declined. Please try another payment method.'")
H("translation", "en", "Please translate the following error messages into Turkish: 'File not found', 'Access denied', 'Connection lost'.")
H("translation", "en", "Give me the Swedish for 'I'd like to return this jacket, it's too small.'")
H("translation", "en", "Translate the following paragraph into simplified Chinese:\nOur office will be closed on Monday for the public holiday. Orders placed over the weekend will ship on Tuesday.")
H("translation", "en", f"Translate this policy excerpt into German, formal 'Sie':\n{PRIVACY}", system="You are a certified legal translator.")
H("translation", "en", "What's the English meaning of the Italian idiom 'in bocca al lupo'? Give me the literal and the real meaning.")
H("translation", "en", "Translate the comments in this snippet from Japanese into English:\n# ユーザーが存在するか確認する\nif user is None:\n    # エラーを返す\n    return error()")
H("translation", "en", "Translate 'out of office until Monday, for urgent matters call Jana' into Czech and Slovak.")
H("translation", "en", "English to Arabic please: 'The clinic opens at 8 am. Please bring your insurance card.'")
H("translation", "en", "translate to russian: we're running late, start without us")
H("translation", "de", "Übersetze bitte ins Englische: 'Wir freuen uns auf die Zusammenarbeit und melden uns nächste Woche.'")
H("translation", "de", "Wie sagt man auf Spanisch 'Ich habe mein Gepäck verloren'?")
H("translation", "de", f"Übersetze diesen Text ins Französische:\n{DE_DOC}")
H("translation", "fr", "Traduis en allemand : 'Pouvez-vous m'envoyer le devis avant vendredi ?'")
H("translation", "fr", f"Peux-tu me donner la version anglaise de ce texte ?\n{FR_DOC}")
H("translation", "fr", "Comment dit-on 'je suis allergique aux noix' en italien ?")
H("translation", "es", "Tradúceme al inglés: 'El envío llegará entre el martes y el jueves.'")
H("translation", "es", "¿Cómo se dice 'mucho gusto en conocerte' en japonés?")
H("translation", "es", f"Pasa esta reseña al francés, por favor:\n{ES_DOC}")
H("translation", "pt", "Traduza para o inglês: 'O pagamento foi confirmado e o pedido já está a caminho.'")
H("translation", "pt", f"Traduza esta notícia para o espanhol:\n{PT_DOC}")
H("translation", "it", "Traduci in inglese: 'Il treno per Milano è in ritardo di venti minuti.'")
H("translation", "it", "Come si dice 'dov'è la farmacia più vicina?' in tedesco?")
H("translation", "nl", "Vertaal naar het Engels: 'De levering is vertraagd door het slechte weer.'")
H("translation", "pl", "Przetłumacz na angielski: 'Spotkanie zostało przeniesione na przyszły wtorek.'")
H("translation", "ja", "この文を英語に翻訳してください：「会議は午後三時に始まります。」")
H("translation", "zh", "请把这句话翻译成英文：“我们下周一开始放假。”")
H("translation", "ru", "Переведи на английский: «Доставка бесплатная при заказе от 3000 рублей».")

# ====================================================================================== more English: agent steps,
# long pasted inputs, system-prompt-driven tasks (the user turn carries only the data)
LONG_PY = ("import json, logging\nfrom dataclasses import dataclass\n\nlog = logging.getLogger(__name__)\n\n@dataclass\nclass Item:\n"
           "    sku: str\n    qty: int\n    price: float\n\ndef load(path):\n    with open(path) as f:\n        raw = json.load(f)\n"
           "    return [Item(**r) for r in raw['items']]\n\ndef total(items):\n    t = 0\n    for it in items:\n        t += it.qty * it.price\n"
           "    return round(t, 2)\n\nif __name__ == '__main__':\n    items = load('cart.json')\n    log.info('total %s', total(items))\n")
H("reasoning", "en", "Current state: 3 of 5 subtasks done, the API quota resets in 40 minutes, the remaining subtasks each need ~30 calls and we have 25 left. Decide how to schedule the rest and explain the trade-off.",
  system="You are the orchestrator of a multi-step research agent.")
H("reasoning", "en", "Before answering, think through whether the user's claim holds: 'Since our conversion rate doubled after the redesign, the redesign caused it.' What else changed, and what evidence would settle it?")
H("reasoning", "en", "Given a 10-litre and a 7-litre jug and a tap, how do you measure exactly 4 litres? Give the sequence and argue it is minimal.")
H("reasoning", "en", "Three candidate vendors quoted: A 40k up front, B 12k/year for 5 years, C 1.2k/month with a 2-year minimum. Over five years with 5% discount rate, which is cheapest? Compute it.")
H("reasoning", "en", "Evaluate this chain of thought and point out the first wrong step: 1) 15% of 80 is 12. 2) So 80 minus 15% is 68. 3) Adding 15% back gives 80. 4) Therefore a 15% cut then 15% raise is neutral.")
H("reasoning", "en", "Prioritise these five bugs for the next sprint given impact and effort, and justify the ranking: login timeout (high impact, 1 day), typo on pricing page (low, 10 min), memory leak in worker (high, unknown), slow search (medium, 3 days), broken CSV export for 2 customers (medium, 0.5 day).")
H("code", "en", f"{LONG_PY}\nThe total is off by a few cents for big carts. Fix the money handling properly.")
H("code", "en", f"Write pytest tests for this module, covering load() and total():\n{LONG_PY}")
H("code", "en", f"Here's the file:\n```python\n{LONG_PY}```\nand the error:\nTypeError: Item.__init__() got an unexpected keyword argument 'discount'\nMake load() tolerate unknown keys.",
  system="You are an autonomous coding agent. Use the tools to edit files; explain briefly.")
H("code", "en", "Write a GraphQL resolver in Node that batches user lookups with DataLoader.")
H("code", "en", "Convert this curl into Python requests: curl -X PUT -H 'Authorization: Bearer $T' -d '{\"active\":false}' https://api.acme.io/v2/users/91")
H("code", "en", "Why does `for i in range(len(a)): a.remove(a[i])` throw IndexError and what's the right way?")
H("creative", "en", "Write a eulogy for a retired server named 'Zeus' that ran payroll for 14 years. Make it funny and touching.")
H("creative", "en", "Give me an opening line for a sci-fi novel that would hook a reader immediately, plus two alternatives.")
H("creative", "en", "Write a short play scene: a barista and a time traveller argue about the future of oat milk.", system="You are a creative writing assistant.")
H("creative", "en", "Create a riddle whose answer is 'a shadow'.")
H("creative", "en", "Write a motivational speech a coach would give to a losing kids' football team at half-time.")
H("creative", "en", "Dream up an origin myth for why cats knock things off tables.")
H("rewrite", "en", f"Rewrite this product update so it's friendlier and less jargony for customers:\n'Release 4.1 introduces idempotent webhook retries with exponential backoff and deprecates the legacy polling endpoint (EOL Q3).'")
H("rewrite", "en", f"Rewrite this support reply so it's warmer and apologises properly:\n{TRANSCRIPT}",
  system="You are a quality coach for support agents.")
H("rewrite", "en", "Make this abstract clearer without shortening it: 'Utilizing a novel methodology, the research endeavours to elucidate the multifaceted ramifications of remote labour modalities upon organisational cohesion.'")
H("rewrite", "en", "Could you smooth out the wording of my speech intro? 'Hi all. So. Today. I talk about our year. Was good year. Many things.'")
H("rewrite", "en", "Revise this headline to be less clickbaity: 'You Won't BELIEVE What This City Did With Its Old Railway!!!'")
H("rewrite", "en", "Rewrite the email below as a polite follow-up, it's the second reminder:\n'Hi Marco, still waiting for the signed contract.'")
H("rewrite", "en", "Make this paragraph gender-neutral: 'Each developer should commit his code daily and ask his manager for review.'")
H("chat", "en", "hello! first time using this, what kinds of things can you help with?")
H("chat", "en", "Do you like music? What kind?")
H("chat", "en", "How long does a refund usually take?", system="You are the help-center assistant for Voyago, a travel booking site.")
H("chat", "en", "is it normal that my dog sleeps like 14 hours a day")
H("chat", "en", "I'm bored, entertain me with a random fact")
H("chat", "en", "sorry, I was away. where were we?", history=["Can you help me choose a laptop?", "Sure! What will you use it for mostly?"])
H("extraction", "en", f"{TRANSCRIPT}", system="Extract {order_id, delivery_status, customer_request, email} from the conversation the user sends. JSON only, no prose.")
H("extraction", "en", f"{JOBPOST}", system="You convert job posts into structured records: {title, remote: bool, skills: [str], salary_range: str, apply_email}. Output JSON.")
H("extraction", "en", f"{PORT}", system="Named-entity extractor. Return {\"locations\": [], \"organisations\": [], \"numbers\": []} for the text provided.")
H("extraction", "en", "Here is the OCR of a business card, split it into fields (name, title, company, phone, email, website):\nMARIA  ALVES | Head of Growth | Finch Analytics | +351 912 345 678 | maria@finch.io | finch.io")
H("extraction", "en", "From this changelog, list each item with type (feature, fix, deprecation) as JSON:\n- Added CSV import\n- Fixed crash on empty project\n- Deprecated /v1/search\n- Added dark mode")
H("extraction", "en", "Read these order lines and return [{sku, qty}] only: 'SKU-104 x3, SKU-220 x1; also two of SKU-031 and ten SKU-500'")
H("extraction", "en", "Detect the language and the intent of each message, output JSONL: 'Quiero cancelar mi pedido' / 'Wann kommt mein Paket?' / 'Can I pay with PayPal?'")
H("summarize", "en", f"{RETRO}", system="You turn team notes into a 3-bullet digest for managers. Be concise.")
H("summarize", "en", f"{SLEEP}", system="Summarize any text the user sends in at most two sentences.")
H("summarize", "en", f"Please give me a one-paragraph overview of this thread for someone joining the project late:\n{TRANSCRIPT}\n\n(and the PR comments said the courier API has been flaky all week)")
H("summarize", "en", f"Context documents:\n[A] {PRIVACY}\n[B] Our cookie banner lets users reject analytics cookies; marketing cookies are off by default.\n\nQuestion: in short, what do we do with user data? Synthesize A and B.",
  system="You are a RAG answerer. Base your answer only on the documents.")
H("summarize", "en", "Give me a short recap of the plot of the first Harry Potter book.")
H("summarize", "en", "Summarize this call transcript in 3 bullets: 'Client said the dashboard is slow on Mondays; we think it's the weekly report job; they want a fix before the board meeting on the 20th; we offered to move the job to Sunday night.'")
H("summarize", "en", "Condense my notes into a paragraph I can send to my team: new hire starts Monday, needs laptop and accounts, buddy is Sam, first week is onboarding sessions, first task is the docs bug backlog.")
H("summarize", "en", "Write a brief summary of this bug report for the triage meeting: 'Since 2.3.1, uploading images larger than 10 MB on Android fails silently. iOS is fine. Started after we switched the HTTP client. Workaround: compress first.'")
H("translation", "en", f"{DE_DOC}", system="You are a translation engine in a localization pipeline. Translate every user message into English. Output only the translation.")
H("translation", "en", "Welcome to your dashboard! Here you can track orders, manage invoices and invite teammates.",
  system="Translate the user's text into French (France). Keep product terms in English. Return only the translation.")
H("translation", "en", "Translate these push notifications to German, keep emoji and {count}: 'You have {count} new messages 📬', 'Your ride is arriving 🚗'")
H("translation", "en", "What's the Spanish word for 'invoice', and how would I write 'the invoice is attached' in a formal email in Spanish?")
H("translation", "en", "Please give an English translation of this Portuguese note: 'Deixei a chave com o porteiro, volto amanhã cedo.'")
H("translation", "en", "Translate the docstring and the error message strings into German, leave identifiers alone:\ndef withdraw(amount):\n    \"\"\"Withdraw money from the account.\"\"\"\n    if amount <= 0:\n        raise ValueError('Amount must be positive')")
H("translation", "en", "How do you say 'cheers' in Hungarian, Greek and Finnish?")


def main():
    with OUT.open("w") as f:
        for it in ITEMS:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    print(f"wrote {len(ITEMS)} items to {OUT}")


if __name__ == "__main__":
    main()
