"""The settings a description states beyond the recipe's own slots: its grain in the user's
nouns, the data sources and features it names, its constraints, and what is ambiguous in it.

Plain Python (no Django). ``assistant.nlu.extract.read_message`` calls these readers; the
labelled corpus (``assistant/corpus``, the ``settings`` of each row) measures them
(``assistant/tests/test_settings_corpus.py``).

* ``grain(text)``        entity columns of "per warehouse and SKU", "each branch", "at store-SKU
  level": known nouns map to the workspace's columns (``GRAIN_COLUMNS``), others to ``<noun>_id``.
* ``features(text)``     canonical names of the inputs named ("weather and holidays" ->
  ``["weather", "holidays"]``), in ``FEATURES`` order of mention.
* ``other_inputs(text, known)`` inputs outside ``FEATURES`` named after an input cue ("using web
  traffic" -> ``["web_traffic"]``), so the reply can say them back.
* ``drop_features(text)`` the features a follow-up removes ("drop the weather").
* ``constraints(text)``  {"sites": 10, "eligibility": "...", "min_margin": 0.3, "budget": ...,
  "max_contacts_per_month": 2, "min_distance_km": 2, "series": 12000}: what limits the decision.
* ``event_schedule(text)`` "after each promotion": a retraining trigger that is an event, not a clock.
* ``ambiguous_period(text)`` the period word that could be the frequency or the retraining schedule.
* ``unitless_horizon(text)`` "a horizon of 12" (no unit): the number, for the follow-up question.
* ``unread_numbers(text, slots)`` limits and targets whose number no reader used ("under 2%"):
  quoted back in the reply rather than dropped.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- grain

GRAIN_COLUMNS = {
    "store": "store_id",
    "shop": "store_id",
    "outlet": "store_id",
    "branch": "branch_id",
    "product": "product_id",
    "sku": "product_id",
    "item": "product_id",
    "article": "product_id",
    "customer": "customer_id",
    "account": "customer_id",
    "household": "household_id",
    "site": "site_id",
    "location": "site_id",
    "region": "region",
    "category": "category",
    "series": "series_id",
    "segment": "segment",
    "channel": "channel",
}
# Words that end a grain phrase, or show that "per"/"each" does not introduce one.
_NOT_GRAIN = {
    "day", "week", "month", "hour", "quarter", "year", "period", "minute", "night", "morning", "evening",
    "cent", "unit", "time", "one", "other", "change", "of", "the", "our", "and", "a", "an", "in", "or",
    "but", "not", "only", "so", "request", "call", "contact", "visit", "run", "model", "price", "step",
    "side", "case", "forecast", "prediction", "action", "promotion", "campaign", "kind", "level", "it",
    "sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "weekend", "weekday",
    "them", "this", "that", "these", "those", "with", "for", "to", "by", "at", "on", "we", "you", "i",
    "cycle", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "is", "are", "will", "should",
    "can", "need", "needs", "decision", "kwh", "litre", "liter", "pint", "pound", "dollar", "euro", "mile",
    "km", "kg", "head", "capita", "transaction", "order", "booking", "from", "as", "into", "over", "under",
    "about", "using", "reacting", "based", "next", "last", "future", "following", "within", "across",
    "per", "each", "every", "whether", "be", "sell", "offer", "offers", "client", "forward", "against", "depending", "please",
    "number", "cost", "including", "if", "when", "which", "who", "what", "how", "where",
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty",
}  # fmt: skip
# Adjectives skipped before the noun ("each of our existing stores", "per B2B customer").
_ADJECTIVES = {
    "existing", "current", "new", "individual", "single", "big", "small", "large", "local", "own",
    "domestic", "regional", "national", "possible", "candidate", "potential", "open", "active", "key",
    "b2b", "b2c", "major", "main", "retail", "wholesale", "online", "physical", "different", "separate",
}  # fmt: skip
# Two- and three-word entities kept whole (the last word is the head otherwise: "bus route").
_COMPOUNDS = {
    "car park", "distribution centre", "distribution center", "line of business", "blood group",
    "customer segment", "police force area", "product line", "cell site", "vending machine", "room type",
    "risk band", "trade area", "garden centre", "garden center", "fulfilment centre",
}  # fmt: skip
_DROPPED_TAILS = {"type", "kind", "level", "combination", "combo", "basis"}
# Nouns that group an entity or a quantity: "store cluster", "price zone", "car class",
# "postcode sector" are entities of their own, kept whole with the word before.
_GROUP_NOUNS = {"cluster", "zone", "sector", "district", "class", "group", "band", "tier", "format", "grade"}
# The entity-noun lexicon: what a grain is made of, by kind (singular; plurals and British
# spellings go through ``singular``). "by", "across", "every", the words after "and", "X-level"
# and a count of entities ("our 25 garden centres") read only these; "per"/"each" read any noun.
ENTITY_NOUNS = {
    # places that sell or serve
    "store", "shop", "outlet", "branch", "site", "location", "restaurant", "cafe", "pub", "bar", "kitchen",
    "hotel", "property", "cinema", "screen", "venue", "gym", "club", "showroom", "dealership", "dealer",
    "franchise", "franchisee", "kiosk", "pharmacy", "clinic", "hospital", "practice", "surgery", "ward",
    "school", "campus", "library", "court", "prison", "garden centre", "centre", "center", "hub", "atm",
    "office", "car park", "station", "charger", "machine",
    "vending machine",
    # supply chain and transport
    "warehouse", "dc", "distribution centre", "distribution center", "fulfilment centre", "depot", "dock",
    "port", "terminal", "airport", "flight", "route", "lane", "line", "stop", "platform", "corridor",
    "vehicle", "truck", "van", "fleet", "aircraft", "plant", "factory", "mill", "supplier", "vendor",
    # what is sold
    "product", "sku", "item", "article", "variant", "brand", "category", "subcategory", "department",
    "range", "product line", "collection", "dish", "drug", "vaccine", "material", "beer", "style", "size",
    "colour", "color", "section", "seat",
    "film", "course", "room", "room type", "tariff", "plan", "service", "line of business",
    # geography
    "region", "country", "state", "county", "province", "district", "borough", "city", "town", "village",
    "postcode", "zip", "zone", "area", "territory", "market", "trade area", "police force area",
    "cell site", "exchange", "reservoir", "substation", "feeder", "meter", "building", "flat", "development",
    # people and groups
    "customer", "account", "household", "segment", "customer segment", "cohort", "channel", "risk band",
    "blood group", "team", "agent", "queue", "desk", "skill", "cluster", "format", "lab",
}  # fmt: skip
# Kept for the readers below: a known entity ends a noun phrase.
_BY_NOUNS = ENTITY_NOUNS | set(GRAIN_COLUMNS)
# The one a next-best-action recipe always decides for: "each customer" is not a grain there.
PERSON_NOUNS = {
    "customer", "account", "household", "member", "subscriber", "user", "passenger", "guest", "patient",
    "policyholder", "client", "shopper", "visitor", "player", "student", "borrower", "cardholder",
}  # fmt: skip
_WORD = r"[a-z0-9][a-z0-9&'’-]*"
_WORD_AT_RE = re.compile(rf"[ \t]*({_WORD})", re.I)
_GRAIN_START_RE = re.compile(
    r"\b(?P<trig>per|for\s+each|for\s+every|each|every|by|across\s+(?:all\s+)?(?:of\s+)?(?:our|the)?)\s+"
    r"(?:(?:of\s+)?(?:our|the|its|their|your|all)\s+)?(?:\d[\d,.]*k?\s+)?",
    re.I,
)
_LEVEL_RE = re.compile(
    r"\b(?P<g>(?:[a-z]+[-\s/]){0,2}[a-z]+)[-\s](?:level|grain|granularity)\b",
    re.I,
)
# A grain noun as a modifier: "store-SKU demand", "daily SKU sales", "store-item series".
_MODIFIER_RE = re.compile(
    r"\b(?P<g>(?:store|sku|item|product|branch)(?:[-/ ](?:store|sku|item|product))?)s?[- ]"
    r"(?:demand|sales|volumes?|series|combinations?|forecasts?|level|units)\b",
    re.I,
)
_JOIN_RE = re.compile(
    r"\s*(?:,\s*(?:and\s+)?|\band\b\s*(?:per\s+|by\s+|each\s+)?|\bx\b|×|/|&|\+|-|\bper\b|\bby\b)\s*", re.I
)


def singular(word: str) -> str:
    w = word.lower().strip("'-’").removesuffix("'s").removesuffix("’s")
    if w in ("series", "news", "analysis", "business", "bus", "gas", "status", "campus", "sales"):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(?:ch|sh|x|ss|ses)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 2:
        return w[:-1]
    return w


def grain_column(noun: str) -> str:
    """The column a grain noun becomes: the workspace's own ("sku" -> product_id) or <noun>_id."""
    key = singular(noun).replace(" ", "_")
    if key in GRAIN_COLUMNS:
        return GRAIN_COLUMNS[key]
    return key if key.endswith("_id") else f"{key}_id"


def _phrase(text: str, pos: int) -> tuple[str | None, int]:
    """The noun phrase at ``pos`` (up to three words, head last) and where it ends."""
    words: list[str] = []
    end = pos
    while m := _WORD_AT_RE.match(text, end):
        w = singular(m.group(1))
        nxt = _WORD_AT_RE.match(text, m.end())
        if nxt and singular(nxt.group(1)) in _GROUP_NOUNS and not re.fullmatch(r"\d[\d,.]*k?", w):
            # "price zone", "store cluster", "car class": the pair is the entity.
            if w not in ("per", "each", "every", "by", "and", "or", "the", "our", "a", "an", "of", "in"):
                return f"{w} {singular(nxt.group(1))}", nxt.end()
        if w in _NOT_GRAIN or re.fullmatch(r"\d[\d,.]*k?", w):
            break
        if not words and w in _ADJECTIVES:
            end = m.end()
            continue
        if w in _ADJECTIVES:
            break
        words.append(w)
        end = m.end()
        if w in _BY_NOUNS:
            # A known entity is the head, unless it starts a compound ("line of business").
            rest = text[end : end + 30].lower()
            for compound in _COMPOUNDS:
                head, _, tail = compound.partition(" ")
                if singular(head) == w and re.match(rf"\s+{re.escape(tail)}s?\b", rest):
                    return compound, end + re.match(rf"\s+{re.escape(tail)}s?\b", rest).end()
            break
        if len(words) == 2 or re.match(r"['’]s\b", text[end:]):
            break
    while words and words[-1] in _DROPPED_TAILS:
        words.pop()
    if not words:
        return None, end
    for size in (3, 2):
        tail = " ".join(words[-size:])
        if tail in _COMPOUNDS:
            return tail, end
    return words[-1], end


def _nouns_at(text: str, pos: int, *, by: bool) -> list[str]:
    """The nouns of a grain phrase starting at ``pos``: "warehouse and SKU", "store per day"."""
    out: list[str] = []
    i = pos
    while True:
        noun, end = _phrase(text, i)
        if noun is None or (by and noun not in _BY_NOUNS and noun.split()[-1] not in _GROUP_NOUNS):
            break
        out.append(noun)
        j = _JOIN_RE.match(text, end)
        if not j or j.end() == end:
            break
        i = j.end()
        by = True  # after "and"/"x", only entity nouns ("per store and day" ends at "day")
    return out


# A count of entities: "for our 25 garden centres", "across 300 grocery stores".
_COUNT_RE = re.compile(
    r"\b(?:for|across|in|at|of|over)\s+(?:all\s+)?(?:(?:of\s+)?(?:our|the|its|their|your|my)\s+)?(?:~|about\s+|around\s+)?"
    r"(?:\d[\d,]*|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|fifty|hundreds\s+of|thousands\s+of)\s+",
    re.I,
)


def _counted(text: str, pos: int) -> str | None:
    """The entity noun (plural in the text) among the next three words, else None."""
    words = re.findall(r"[a-z][a-z'’-]*", text[pos : pos + 50].lower())[:3]
    for i, w in enumerate(words):
        one = singular(w)
        if i + 1 < len(words) and f"{one} {singular(words[i + 1])}" in _COMPOUNDS:
            return f"{one} {singular(words[i + 1])}"
        if one in _BY_NOUNS and one != w:
            return one
    return None


def grain_nouns(text: str, *, modifiers: bool = True) -> list[str]:
    """The entity nouns of the grain, singular, in order of mention. ``modifiers``: read a
    noun used as a modifier too ("store-SKU demand": a forecast's series), and a count of
    entities ("for our 25 garden centres": one series each)."""
    found: list[str] = []
    if modifiers:
        for m in _COUNT_RE.finditer(text):
            if (noun := _counted(text, m.end())) and noun not in found:
                found.append(noun)
    for m in _GRAIN_START_RE.finditer(text):
        trig = m.group("trig").lower()
        if (
            trig.startswith("across")
            and (w := _WORD_AT_RE.match(text, m.end()))
            and singular(w.group(1)) == w.group(1).lower()
        ):
            continue  # "across the city" is where, not a grain ("across our stores" is)
        nouns = _nouns_at(text, m.end(), by=trig == "by" or trig.startswith("across") or trig == "every")
        found.extend(n for n in nouns if n not in found)
    if modifiers:
        for m in _MODIFIER_RE.finditer(text):
            found.extend(n for n in map(singular, re.split(r"[-/ ]", m.group("g"))) if n not in found)
    for m in _LEVEL_RE.finditer(text):
        parts = [singular(p) for p in re.split(r"[-\s/]", m.group("g")) if p]
        parts = [p for p in parts if p in _BY_NOUNS]
        found.extend(p for p in parts if p not in found)
    return found


def grain(text: str, *, modifiers: bool = True) -> list[str] | None:
    """The grain's entity columns (the proposal adds the starting recipe's time column back)."""
    cols: list[str] = []
    for noun in grain_nouns(text, modifiers=modifiers):
        col = grain_column(noun)
        if col not in cols:
            cols.append(col)
    return cols or None


# --------------------------------------------------------------------------- features

# Canonical feature name -> the words that name it (regexes), most specific first.
FEATURES: dict[str, str] = {
    "competitor_distance": r"competitor\s+distance|distance\s+to\s+(?:the\s+)?(?:nearest\s+)?competitors?",
    "competitor_prices": r"competitors?'?\s+prices?|competitor\s+pricing|(?:their|rivals'?)\s+prices",
    "competitor_rates": r"competitors?'?\s+rates",
    "competition": r"competition|competitor\s+(?:count|density|presence|locations?|stores?|sites?)|"
    r"(?:nearby|local|rival)\s+(?:competitors|rivals|stores)|competitors\s+nearby|rivals\s+nearby",
    "weather": r"weather|meteorolog\w*|hot\s+days|cold\s+snaps?|heat\s?waves?|sunshine|snow(?:fall)?|"
    r"frost|wind\s+speed",
    "temperature": r"temperatures?|temps",
    "rainfall": r"rain(?:fall|y\s+days)?|precipitation",
    "humidity": r"humidity",
    "solar": r"solar(?:\s+generation)?",
    "storms": r"storms?(?:\s+warnings?)?",
    "school_holidays": r"school\s+(?:holidays?|hols|breaks?|vacations?|terms?)|half[- ]terms?",
    "holidays": r"(?:bank|public|national|religious)\s+(?:holidays?|hols)|holidays|"
    r"holiday\s+(?:calendar|effects?|periods?|flags?|weekends?|seasons?|dates)|"
    r"(?:christmas|easter|ramadan|eid|thanksgiving)\s+(?:effects?|dates|calendar|holidays?|uplift)",
    "paydays": r"pay\s*days?|salary\s+days?|pension\s+days?|benefit\s+payment\s+dates",
    "promotions": r"promo(?:tion)?s?\b|promo\s+calendar|promotional\s+(?:calendar|activity|plans?)|"
    r"(?:planned|upcoming)\s+(?:promotions|discounts|deals)|deals?\s+calendar",
    "price_cuts": r"price\s+cuts",
    "marketing_spend": r"marketing\s+(?:spend|budget|campaigns)|ad(?:vertising)?\s+(?:spend|campaigns)|"
    r"tv\s+ads?|media\s+spend",
    "events": r"events?|concerts?|strikes?|match\s+days?|fixtures|festivals?|gigs|sporting\s+events",
    "flu_season": r"flu\s+season",
    "elective_schedule": r"elective\s+(?:surgery\s+)?(?:schedule|list)",
    "stockouts": r"out\s+of\s+stock|stock-?outs?",
    "footfall": r"foot[\s-]?fall|foot\s+traffic|visitor\s+(?:numbers|counts)|pedestrian\s+(?:counts|flows?)|"
    r"passing\s+trade",
    "population": r"population(?:\s+density)?|residents|catchment\s+size|households\s+nearby",
    "income": r"incomes?|affluence|deprivation|spending\s+power|disposable\s+income",
    "drive_time": r"drive[- ]times?|travel\s+times?|driving\s+(?:time|distance)",
    "days_before_departure": r"days\s+(?:before|to)\s+departure",
    "wholesale_price": r"wholesale\s+(?:costs?|prices?)",
    "price_history": r"price\s+(?:and\s+volume\s+)?history",
    # Our own price as an input of a forecast (a pricing recipe sets it: not an input there).
    "price": r"(?:planned|our\s+own|selling|shelf|retail|ticket)\s+prices?|price\s+(?:changes|levels?|points?)|"
    r"(?:the|our)\s+prices?(?=\s+(?:as\s+(?:an?\s+)?(?:input|feature|driver)s?|too))",
    "seasonality": r"seasonality",
}
_FEATURE_RES = {name: re.compile(rf"\b(?:{p})\b", re.I) for name, p in FEATURES.items()}
# A feature word counts only as an input: next to a word that says so ("using", "with ... as an
# input", "driver", "data", "into account") or in the family's own input nouns (weather,
# holidays, footfall...). Words that only name an input when introduced as one:
_NEEDS_CONTEXT = {"events", "promotions", "income", "population", "competition", "seasonality", "storms"}
_INPUT_CONTEXT_RE = re.compile(
    r"\b(?:using|uses?|use\s+of|with|from|including|include|incorporat\w*|consider\w*|taking|takes|"
    r"account\s+for|into\s+account|driver|drivers|inputs?|features?|signal|data|as\s+well\s+as|plus|and|includ\w*|"
    r"combin\w*|reacting|based|effects?|baked|affect\w*|cause|spikes?|depend\w*)\b",
    re.I,
)
# A word after these is what is predicted or when, not an input ("expected footfall",
# "after each promotion").
_NOT_FEATURE_CONTEXT_RE = re.compile(
    r"\b(?:after|each|every|per|next|which|during|expected)\s+(?:\w+\s+)?$", re.I
)
# ... and so is a word followed by these ("footfall predictions").
_TARGET_AFTER_RE = re.compile(r"^\s+(?:predictions?|forecasts?|projections?)\b", re.I)


def features(text: str, family: str | None = None) -> list[str]:
    """The inputs the text names, canonical, in order of mention. In a pricing brief,
    "competitors" are their prices."""
    hits: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for name, rx in _FEATURE_RES.items():
        for m in rx.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            before = text[max(0, m.start() - 40) : m.start()]
            target_after = name != "weather" and _TARGET_AFTER_RE.match(
                text[m.end() :]
            )  # a weather forecast is an input
            if _NOT_FEATURE_CONTEXT_RE.search(before) or target_after:
                continue
            if name in _NEEDS_CONTEXT:
                around = text[max(0, m.start() - 40) : m.end() + 30]
                # ... or after an input cue earlier in its sentence ("Inputs we have: footfall, ..., income").
                sentence = re.split(r"[.;!?\n]", text[: m.start()])[-1]
                if not _INPUT_CONTEXT_RE.search(around) and not _INPUTS_CUE_RE.search(sentence + " "):
                    continue
            taken.append((m.start(), m.end()))
            hits.append((m.start(), name))
            break
    names = [name for _, name in sorted(hits)]
    if family == "pricing" and "competition" in names:
        names = list(dict.fromkeys("competitor_prices" if n == "competition" else n for n in names))
    if family == "pricing":
        names = [n for n in names if n != "price"]
    return names


# Inputs the lexicon does not know ("using web traffic and loyalty tier"): read after a word
# that introduces inputs, as snake_case names, so they are said back rather than dropped.
_INPUTS_CUE_RE = re.compile(
    r"\b(?:using|use\s+(?!(?:the\s+)?defaults?\b|it\b|this\b|that\b|them\b|the\s+same\b)|based\s+on|taking\s+into\s+account|"
    r"tak(?:e|ing)\s+account\s+of|factor(?:ing|s)?\s+in|(?:inputs?|data)\s+we\s+(?:have|hold|get|can\s+get)\s*:?|"
    r"incorporat(?:e|es|ing)|account(?:ing)?\s+for|driven\s+by|(?:inputs?|features?|drivers?|signals?|regressors?|"
    r"variables?|covariates?)\s*(?:like|such\s+as|including|are|:|=)|(?:along\s+)?with\s+(?=[^.;,\n]{0,40}\b(?:data|as\s+"
    r"(?:an?\s+)?(?:inputs?|drivers?|features?|regressors?))\b))\s+",
    re.I,
)
# Where an input list ends: punctuation or a word that starts another part of the sentence.
_INPUTS_END_RE = re.compile(
    r"[.;:!?()\n]|\b(?:to|for|so|so\s+that|that|which|in\s+order|per|each|every|by|at|over|under|within|"
    r"when|where|while|because|but|then|next|retrain\w*|score\w*|forecast\w*|predict\w*|as\s+(?:an?\s+)?"
    r"(?:inputs?|drivers?|features?|regressors?))\b",
    re.I,
)
_INPUT_STOP = {
    "the", "our", "their", "its", "a", "an", "some", "any", "all", "local", "historical", "past", "recent",
    "available", "existing", "current", "relevant", "external", "internal", "other", "own", "extra", "more",
    "additional", "basic", "simple", "standard", "usual", "main", "key", "data", "info", "information",
    "history", "features", "inputs", "drivers", "signals", "variables", "things", "stuff", "etc", "also",
}  # fmt: skip
# Nouns that are never an input column of their own: what is predicted, the model, time words.
_NOT_INPUT = {
    "model", "models", "method", "approach", "algorithm", "ml", "machine", "learning", "ai", "python", "sql",
    "sales", "demand", "volume", "volumes", "revenue", "units", "orders", "calls", "it", "them", "this", "that",
    "we", "us", "you", "me", "what", "which", "how", "who", "last", "year", "years", "month", "months", "week",
    "weeks", "day", "days", "prices", "price", "pricing", "customers", "customer", "stores", "store",
    "sites", "site", "products", "product", "uplift", "elasticity", "elasticities", "regression",
    "lightgbm", "xgboost", "prophet", "arima", "lstm", "gradient", "boosting", "forest", "random",
    "treatment", "control", "group", "groups", "experiment", "test", "tests", "campaign", "offer", "offers",
    "recipe", "baseline", "template", "dataset", "file", "csv", "parquet", "upload", "api", "batch",
    "margin", "margins", "profit", "cost", "costs", "budget",
}  # fmt: skip


def other_inputs(text: str, known: list[str]) -> list[str]:
    """Inputs named after an input cue that ``features`` did not read, as snake_case names
    (at most three words each): "using web traffic and loyalty tier" ->
    ``["web_traffic", "loyalty_tier"]``. Items with a number, a known feature's words, an
    entity noun or a predicted quantity are not inputs and are left out."""
    out: list[str] = []
    for cue in _INPUTS_CUE_RE.finditer(text):
        tail = text[cue.end() : cue.end() + 120]
        end = _INPUTS_END_RE.search(tail)
        phrase = tail[: end.start()] if end else tail
        for item in re.split(r",|\band\b|\bor\b|\bplus\b|&|/|\bas\s+well\s+as\b", phrase, flags=re.I):
            item = item.strip()
            if not item or any(rx.search(item) for rx in _FEATURE_RES.values()):
                continue
            if any(
                item.lower() in m.group(0).lower() for rx in _FEATURE_RES.values() for m in rx.finditer(text)
            ):
                continue  # "distance" of "distance to competitors", read as competitor_distance
            words = [w for w in re.findall(r"[a-z][a-z'-]*|\S", item.lower()) if w not in _INPUT_STOP]
            if not words or len(words) > 3 or not all(re.fullmatch(r"[a-z][a-z-]*", w) for w in words):
                continue
            if any(w in _NOT_INPUT or singular(w) in _BY_NOUNS or w in _NOT_GRAIN for w in words):
                continue
            name = "_".join(w.replace("-", "_") for w in words)
            if name not in known and name not in out:
                out.append(name)
    return out


_DROP_RE = re.compile(
    r"\b(?:drop|remove|delete|exclude|forget|take\s+out|get\s+rid\s+of|without|no\s+more|leave\s+out|"
    r"don'?t\s+(?:use|need|include))\b(?P<rest>(?:\s+(?:the|any|our|all|of|those|that))*\s+[^.;\n]{0,60})",
    re.I,
)


def drop_features(text: str) -> list[str]:
    """The features a follow-up removes: "drop the weather", "without holidays"."""
    m = _DROP_RE.search(text)
    if not m:
        return []
    rest = m.group("rest")
    # The feature must come first after the verb ("drop the weather and holidays"), not later
    # in the sentence ("without moving any price ..., and keep an eye on competitor prices").
    first = re.match(r"(?:\s+(?:the|any|our|all|of|those|that))*\s+", rest)
    head = rest[first.end() if first else 0 :]
    names = [
        (m.start(), name) for name, rx in _FEATURE_RES.items() if (m := rx.search(head)) and m.start() <= 40
    ]
    if not names or min(names)[0] > 0:
        return []
    return [name for _, name in sorted(names)]


# --------------------------------------------------------------------------- constraints

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "fifty": 50,
}  # fmt: skip
_N = r"(?P<n>\d[\d,]*|" + "|".join(_NUMBER_WORDS) + r")"
_SITE_NOUNS = (
    r"(?:new\s+)?(?:stores?|shops?|sites?|branch(?:es)?|outlets?|restaurants?|pharmac(?:y|ies)|gyms?|"
    r"locations?|cafes?|clinics?|hotels?|depots?|warehouses?|stations?|centres?|centers?|units?|"
    r"dark\s+stores?|car\s+parks?|pubs?|cinemas?|showrooms?)"
)
_SITES_RES = [
    re.compile(rf"\bopen\s+(?:its\s+|our\s+|the\s+|their\s+)?(?:next\s+|another\s+|up\s+to\s+)?{_N}\s+(?:\w+\s+){{0,2}}?{_SITE_NOUNS}\b", re.I),
    re.compile(rf"\b(?:afford|budget\s+for|room\s+for|plan\s+(?:for|to\s+open)|wants?|want\s+to\s+open|opening|add)\s+(?:only\s+)?{_N}\s+(?:more\s+)?(?:\w+\s+)?new\s+{_SITE_NOUNS}\b", re.I),
    re.compile(rf"\b(?:shortlist|pick|choose|select)\s+(?:the\s+best\s+|the\s+top\s+)?{_N}\s+(?:new\s+)?(?:[\w-]+\s+){{0,2}}?{_SITE_NOUNS}\b", re.I),
    re.compile(rf"\b{_N}\s+new\s+(?:[\w-]+\s+){{0,2}}?{_SITE_NOUNS}\b", re.I),
    # "we'll open 20 out of ~400 candidates", "we'll pick the top 12"
    re.compile(rf"\bopen\s+{_N}\s+(?:of|out\s+of)\b", re.I),
    re.compile(rf"\b(?:pick|choose|take|shortlist|select)\s+the\s+(?:top|best)\s+{_N}\b(?!\s*%)", re.I),
]  # fmt: skip


def _int(raw: str) -> int:
    raw = raw.lower().replace(",", "")
    return _NUMBER_WORDS[raw] if raw in _NUMBER_WORDS else int(raw)


def _sites(text: str) -> int | None:
    for rx in _SITES_RES:
        if m := rx.search(text):
            n = _int(m.group("n"))
            if 0 < n < 100_000:
                return n
    return None


_ELIGIBILITY_RE = re.compile(
    r"(?<![-\w])(?P<e>(?:only\s+(?:to\s+)?(?:those|customers|people|members|users|accounts|households|policyholders|subscribers)\b[^.;\n]{3,60})|"
    r"(?:(?<=[.,;:(?!] )|(?<=^))only\s+(?:to\s+)?[a-z-]+s\b(?:\s+(?:with|who|in|on|that|out\s+of)\b[^.;,\n]{2,50})?|"
    r"(?:customers|members|users|accounts|households)\s+(?:with\s+(?:marketing\s+)?consent|out\s+of\s+contract)\b|"
    r"(?:(?:opted[- ]in|eligible|consented)\s+(?:customers|members|users)(?:\s+only)?)|"
    r"(?:never\s+(?:contact|target|email|call|mail)\s+[^.;\n]{3,60})|"
    r"(?:exclud\w*\s+(?:customers|anyone|those|people|accounts)\b[^.;\n]{3,60})|"
    r"(?:not\s+(?:to\s+)?(?:contact|target)\s+(?:anyone|customers|those)\b[^.;\n]{3,60}))",
    re.I,
)
_MIN_MARGIN_RE = re.compile(
    r"\b(?:keep(?:ing)?|hold(?:ing)?|maintain(?:ing)?|protect(?:ing)?|with)?\s*(?:the\s+|our\s+|gross\s+)?margins?\s+"
    r"(?:(?:has|have|needs?|must|should)\s+(?:to\s+)?(?:stay|remain|be)\s+)?"
    r"(?:above|over|at\s+least|of\s+at\s+least|>=?|≥|no\s+lower\s+than|not\s+below|floor\s+(?:is|of|at)?)\s*(?P<v>\d+(?:\.\d+)?)\s*(?:%|percent)|"
    r"\bmin(?:imum|\.)?\s+(?:gross\s+)?margin\s+(?:of\s+|is\s+|at\s+)?(?P<v2>\d+(?:\.\d+)?)\s*(?:%|percent)",
    re.I,
)
_BUDGET_RE = re.compile(
    r"(?:[$€£]\s*(?P<v>\d+(?:\.\d+)?)\s*(?P<k>[km])?\s+(?:\w+\s+){0,2}budget|budget\s+(?:of|is)\s+[$€£]?\s*(?P<v2>\d+(?:\.\d+)?)\s*(?P<k2>[km])?)",
    re.I,
)
_CONTACTS_RE = re.compile(
    r"\b(?:more\s+than|over|at\s+most|max(?:imum)?(?:\s+of)?|no\s+more\s+than)\s+(?P<n>\d+|one|two|three|four|five)\s+"
    r"(?:offers?|contacts?|messages?|emails?|calls?|mailings?)\s+(?:a|per|each)\s+month\b",
    re.I,
)
_DISTANCE_RE = re.compile(
    r"\b(?:at\s+least|min(?:imum|\.)?(?:\s+of)?|no\s+closer\s+than|not\s+within)\s+(?P<v>\d+(?:\.\d+)?)\s*"
    r"(?P<u>km|kilomet(?:er|re)s?|m|met(?:er|re)s|miles?)\s+(?:away|apart|from|between|of\s+each\s+other|to\s+the\s+next)\b",
    re.I,
)
_DISTANCE_KM = {"m": 0.001, "meter": 0.001, "metre": 0.001, "mile": 1.609344}
# A number of people to contact: "can only call 200 customers", "we can afford to mail 20,000",
# "capacity for about 300 visits", "target group = top 10k customers".
_CONTACT_COUNT_RE = re.compile(
    r"\b(?:can\s+(?:only\s+)?(?:afford\s+to\s+)?|afford\s+to\s+|capacity\s+(?:for|to\s+\w+)\s+|only\s+have\s+(?:room|budget)\s+for\s+)"
    r"(?:call|mail|e-?mail|contact|visit|text|reach|phone|treat|send\s+(?:it|them|offers?)\s+to)?\s*(?:about\s+|around\s+|roughly\s+|~)?"
    r"(?P<n>\d[\d,]*(?:\.\d+)?\s*k?)\b(?!\s*%)|"
    r"\btop\s+(?P<n2>\d[\d,]*(?:\.\d+)?\s*k?)\s+(?:customers|members|accounts|donors|households|subscribers|people|users)\b|"
    r"\bk\s*=\s*(?P<n3>\d[\d,]*)\b",
    re.I,
)
_SERIES_RE = re.compile(
    r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?\s*[kK]|\d+)\s+(?:[a-z-]+\s+){0,2}?"
    r"(?:skus|series|store-skus?|store-items?|store-sku\s+combinations|combinations|time\s+series)\b",
    re.I,
)


def _count(raw: str) -> int:
    raw = raw.replace(",", "").strip()
    return int(float(raw[:-1]) * 1000) if raw.lower().endswith("k") else int(float(raw))


def constraints(text: str) -> dict:
    """What limits the decision, beyond the price bounds, k and offer cost (which are slots)."""
    out: dict = {}
    if (n := _sites(text)) is not None:
        out["sites"] = n
    for m in _ELIGIBILITY_RE.finditer(text):
        only = re.match(r"only\s+(?:to\s+)?([a-z-]+)", m.group("e"), re.I)
        if only and singular(only.group(1)) in _BY_NOUNS and singular(only.group(1)) not in PERSON_NOUNS:
            continue  # "only stores with a year of history": which series, not who is eligible
        out["eligibility"] = re.sub(r"\s+", " ", m.group("e")).strip(" ,.")
        break
    if m := _MIN_MARGIN_RE.search(text):
        out["min_margin"] = round(float(m.group("v") or m.group("v2")) / 100, 6)
    if m := _BUDGET_RE.search(text):
        v = float(m.group("v") or m.group("v2"))
        unit = (m.group("k") or m.group("k2") or "").lower()
        out["budget"] = int(v * (1000 if unit == "k" else 1_000_000 if unit == "m" else 1))
    if m := _CONTACTS_RE.search(text):
        out["max_contacts_per_month"] = _int(m.group("n"))
    if m := _DISTANCE_RE.search(text):
        unit = singular(m.group("u").lower()).replace("kilometer", "km").replace("kilometre", "km")
        v = round(float(m.group("v")) * _DISTANCE_KM.get(unit, 1), 6)
        out["min_distance_km"] = int(v) if v == int(v) else v
    if m := _CONTACT_COUNT_RE.search(text):
        n = _count((m.group("n") or m.group("n2") or m.group("n3")).replace(" ", ""))
        if n >= 1:
            out["k"] = n  # a count: k is a share in the recipe, so it is said back
    if m := _SERIES_RE.search(text):
        out["series"] = _count(m.group("n"))
    if m := re.search(r"\bat\s+least\s+(?P<v>\d+)\s*%\s+above\s+(?:unit\s+)?cost\b", text, re.I):
        out["min_price"] = f"cost_plus_{m.group('v')}pc"
    if m := re.search(r"\bend(?:s|ing)?\s+in\s+(?P<v>\.\d{1,2}|\d+\.\d{1,2})\b", text, re.I):
        out["price_ending"] = float(m.group("v"))
    if re.search(r"\bprice\s+ladders?\b|\bgood[- ]better[- ]best\b", text, re.I):
        out["price_ladder"] = True
    if m := re.search(
        r"\b(?P<n>\d+|two|three|four|five)\s+(?:price\s+|markdown\s+)?(?:steps|markdowns)\b", text, re.I
    ):
        out["markdown_steps"] = _int(m.group("n"))
    return out


# --------------------------------------------------------------------------- schedules and ambiguity

_EVENT_RE = re.compile(
    r"\b(?:re-?train\w*|refresh\w*|re-?run\w*|update\w*|rebuild\w*|re-?fit\w*)?\s*(?:it\s+|the\s+model\s+)?"
    r"(?P<e>(?:after|following|at\s+the\s+end\s+of|whenever|each\s+time|every\s+time)\s+(?:each|every|a|an|the|we\s+\w+\s+a)?\s*"
    r"(?:promotions?|promos?|campaigns?|events?|launch(?:es)?|price\s+changes?|season|sale|product\s+launch(?:es)?|"
    r"new\s+data(?:\s+arrives)?|data\s+(?:drop|load|upload)s?|month[- ]end|quarter[- ]end))\b",
    re.I,
)


def event_schedule(text: str) -> tuple[str, tuple[int, int]] | None:
    """("after each promotion", span): a retraining trigger that is an event, not a time."""
    m = _EVENT_RE.search(text)
    if not m:
        return None
    words = re.sub(r"\s+", " ", m.group("e")).strip()
    if re.search(r"month[- ]end|quarter[- ]end", words, re.I):
        return None  # a date, which the cron reader handles (or the user rephrases)
    return words, (m.start("e"), m.end("e"))


PERIOD_WORDS = {"hourly": "H", "daily": "D", "weekly": "W", "monthly": "M", "quarterly": "Q"}


def ambiguous_period(text: str, frequency: str | None) -> str | None:
    """A period word ("monthly") beside a different frequency ("weekly demand ..., monthly"),
    tied to no verb: the forecast frequency or how often to retrain? None when clear."""
    words = [
        (m.group(0).lower(), m.start())
        for m in re.finditer(r"\b(?:hourly|daily|weekly|monthly|quarterly)\b", text, re.I)
    ]
    if frequency is None or len(words) < 2:
        return None
    for word, _ in words:
        if PERIOD_WORDS[word] != frequency:
            return word
    return None


_UNITLESS_RE = re.compile(
    r"\b(?:horizon|look[- ]?ahead|forecast\s+ahead)\s*(?:of|:|=|is|to|should\s+be)?\s*(?P<n>\d{1,3})(?!\s*(?:%|\d|[a-z]))"
    r"|\b(?P<n2>\d{1,3})\s+(?:ahead|out)\b",
    re.I,
)


def unitless_horizon(text: str) -> int | None:
    """The number of "a horizon of 12", "12 ahead": a horizon without its unit."""
    m = _UNITLESS_RE.search(text)
    if not m:
        return None
    return int(m.group("n") or m.group("n2"))


# --------------------------------------------------------------------------- unread numbers

# A number stated as a limit or a target ("at most 15% of the base", "can only call 200").
_LIMIT_NUMBER_RE = re.compile(
    r"(?P<cue>\b(?:at\s+most|at\s+least|no\s+more\s+than|not\s+more\s+than|no\s+less\s+than|max(?:imum)?|min(?:imum)?|"
    r"under|below|above|over|less\s+than|more\s+than|fewer\s+than|cap(?:ped)?(?:\s+at)?|limit(?:ed)?\s+to|budget(?:\s+is)?|"
    r"target(?:\s+is)?|within|between|up\s+to|only|afford\s+to\s+\w+|capacity\s+for(?:\s+about)?|"
    r"(?:can|could)\s+(?:only\s+)?(?:call|mail|email|contact|visit|serve|reach|handle)|[<>≤≥]=?)\s*"
    r"(?:about\s+|around\s+|roughly\s+|~\s*)?[$€£]?\s*)"
    r"(?P<n>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>%|percent\b|per\s+cent\b|[km]\b|x\b)?",
    re.I,
)
# Units after which a number is a duration or a date, read by the horizon and schedule readers.
_TIME_UNIT_RE = re.compile(
    r"\s*(?:-\s*)?(?:hours?|days?|weeks?|months?|quarters?|years?|am|pm|h|mins?|minutes?)\b", re.I
)


def _numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return []


def unread_numbers(text: str, slots: dict) -> list[str]:
    """Limits and targets in ``text`` ("at most 15% of the base", "can only call 200") whose
    number no setting read: said back, so a constraint the readers miss is not dropped
    silently. Durations and clock times belong to the horizon and schedule readers."""
    used = set()
    for n in _numbers({k: v for k, v in slots.items() if k not in ("overrides",)}):
        used.update(
            {round(n, 6), round(n * 100, 6), round(n / 1000, 6), round(n / 1_000_000, 6), round(abs(n), 6)}
        )
        used.add(round(abs(n) * 100, 6))
    out = []
    for m in _LIMIT_NUMBER_RE.finditer(text):
        if _TIME_UNIT_RE.match(text, m.end()):
            continue
        value = float(m.group("n").replace(",", ""))
        if round(value, 6) in used:
            continue
        tail = re.match(r"(?:\s*[^\s.,;:!?()\n]+){0,3}", text[m.end() :]).group(0)
        phrase = re.sub(r"\s+", " ", text[m.start() : m.end()] + tail).strip()
        if phrase not in out:
            out.append(phrase)
    return out
