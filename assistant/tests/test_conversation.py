"""Issue #18 §2–§3 through the chat API: settings read across phrasings, said back when the
recipe cannot hold them, one follow-up question for what is ambiguous, and a conversation that
refines one proposal until "create it" (and "run a backtest")."""

import pytest

from assistant.nlu import extract
from assistant.services.backtest import start_backtest
from assistant.tests.test_chat import assert_valid, say, stage_config
from recipes.models import Recipe
from runs.models import Run, RunType

pytestmark = pytest.mark.django_db
ISSUE_EXAMPLE = "weekly demand per warehouse and SKU for the next quarter, retrain every Sunday night"


@pytest.fixture(autouse=True)
def _builtin_assistant(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""


# --------------------------------------------------------------------------- reading (pure)


def test_issue_example_reads_horizon_frequency_grain_and_a_retraining_schedule():
    slots = extract.read_message(ISSUE_EXAMPLE).slots
    assert slots["horizon_days"] == 91 and slots["frequency"] == "W"
    assert slots["grain"] == ["warehouse_id", "product_id"]
    assert slots["retrain_schedule"] == "0 22 * * 0" and "schedule" not in slots


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("forecast footfall for the coming 10 days per store", "horizon_days", 10),
        ("hour by hour call volumes, 2 days ahead", "frequency", "H"),
        ("weekly sales forecast for each branch", "grain", ["branch_id"]),
        ("daily demand forecast, error below 15%", "metrics", {"MAPE": {"target": 0.15}}),
        ("weekly forecast, MAPE under 12", "metrics", {"MAPE": {"target": 0.12}}),
        ("daily sales forecast using weather and holidays", "features", ["weather", "holidays"]),
        (
            "rank potential shop sites using footfall and competitor distance",
            "features",
            ["footfall", "competitor_distance"],
        ),
        ("which prices should we charge to keep margin above 30%?", "constraints", {"min_margin": 0.3}),
        (
            "personal loan offers, only customers with no arrears",
            "constraints",
            {"eligibility": "only customers with no arrears"},
        ),
        ("where should the franchise open its next 10 gyms?", "constraints", {"sites": 10}),
        (
            "Please retrain after each promotion. Forecast weekly SKU sales.",
            "event_schedule",
            "after each promotion",
        ),
    ],
)
def test_settings_are_read_across_phrasings(text, key, value):
    assert extract.read_message(text).slots.get(key) == value


def test_nightly_rate_is_not_a_schedule():
    slots = extract.read_message("How sensitive are our hotel room bookings to the nightly rate?").slots
    assert "schedule" not in slots and "retrain_schedule" not in slots
    assert extract.read_message("nightly batch repricing").slots["schedule"] == "0 2 * * *"


# --------------------------------------------------------------------------- said back


def test_weather_and_holidays_are_added_as_optional_columns_and_said_back(api_client, baselines):
    data = say(api_client, "daily sales forecast per store for 4 weeks ahead using weather and holidays")
    known = stage_config(data["proposal"]["manifest"], "feature_prep")["known_features"]
    assert {"holiday_flag", "temperature", "precipitation"} <= set(known)
    assert (
        "I can't add holiday effects to this baseline's feature sets; I added `holiday_flag` as an optional column"
        in data["reply"]
    )
    assert "`temperature`, `precipitation`" in data["reply"]
    assert_valid(data["proposal"])
    data = say(api_client, "drop the weather", data["conversation_id"])
    known = stage_config(data["proposal"]["manifest"], "feature_prep")["known_features"]
    assert "holiday_flag" in known and "temperature" not in known
    assert_valid(data["proposal"])


def test_unrepresentable_settings_are_said_back_not_dropped(api_client, baselines):
    data = say(api_client, "rank potential shop sites using footfall and competitor distance, top 10%")
    assert "already an input of this recipe (`foot_traffic`)" in data["reply"]
    assert "I can't add competitor distance to the location scoring family" in data["reply"]
    data = say(api_client, "where should the franchise open its next 10 gyms? score postcodes, top 20%")
    assert "You want 10 sites" in data["reply"]
    data = say(
        api_client, "Forecast weekly SKU sales for 13 weeks, per store. Please retrain after each promotion."
    )
    assert 'I can\'t schedule retraining "after each promotion"' in data["reply"]
    assert "retraining" not in data["proposal"]["manifest"]
    assert_valid(data["proposal"])


def test_a_metric_named_without_a_number_is_said_back_and_its_target_asked(api_client, baselines):
    data = say(api_client, "grocery: daily demand forecast per store, 4 weeks ahead, we track WAPE")
    assert "You named WAPE without a number" in data["reply"]
    assert any("accuracy do you need" in q for q in data["proposal"]["missing"])
    data = say(api_client, "12%", data["conversation_id"])  # the answer sets the named metric's target
    assert data["proposal"]["manifest"]["evaluation"]["metrics"]["WAPE"]["target"] == 0.12
    assert_valid(data["proposal"])


def test_a_metric_the_family_does_not_compute_is_said_back(api_client, baselines):
    data = say(api_client, "optimise grocery shelf prices for margin within ±5%, AUC above 0.8")
    assert "AUC is not a metric of the pricing family" in data["reply"]
    assert "AUC" not in data["proposal"]["manifest"]["evaluation"]["metrics"]
    assert_valid(data["proposal"])


def test_a_limit_no_reader_understood_is_quoted_back(api_client, baselines):
    text = "who should get the smart meter install offer first? only homeowners, and keep churn under 2%"
    data = say(api_client, text)
    assert data["proposal"]["family"] == "next_best_action"
    assert 'I couldn\'t tell which setting "under 2%" is' in data["reply"]
    assert 'Eligibility ("only homeowners")' in data["reply"]
    # ... and a limit that was read is not quoted as unread.
    data = say(api_client, "retention offers for telco customers, target the top 5% by uplift, batch scoring")
    assert "couldn't tell which setting" not in data["reply"]


def test_a_count_to_contact_is_read_and_said_back_as_not_a_share(api_client, baselines):
    data = say(
        api_client,
        "Bank: churn-prevention contact list. We can only call 1,500 customers a month, each call costs about 4 GBP",
    )
    assert "1,500 to contact: the recipe's k is a share" in data["reply"]
    assert stage_config(data["proposal"]["manifest"], "evaluation")["offer_cost"] == 4
    data = say(api_client, "retention offers: at most 15% of the base, batch scored weekly")
    assert stage_config(data["proposal"]["manifest"], "evaluation")["k"] == 0.15


def test_a_pricing_time_step_is_said_back(api_client, baselines):
    data = say(api_client, "Car rental: daily rates per branch and car class, changes limited to ±20%.")
    assert data["proposal"]["family"] == "pricing"
    assert "A daily time step is not a setting of the pricing family" in data["reply"]
    assert stage_config(data["proposal"]["manifest"], "training")["price_bounds"] == {
        "min_change": -0.2,
        "max_change": 0.2,
    }


@pytest.mark.parametrize(
    "text, family",
    [
        (
            "Can you help me figure out how many parcels we will have to handle during peak season?",
            "forecasting",
        ),
        (
            "Which B2B accounts should our account managers visit this month? We have capacity for 300.",
            "next_best_action",
        ),
        (
            "How much ice cream will we sell this summer? We're a small chain of kiosks along the coast.",
            "forecasting",
        ),
    ],
)
def test_a_question_about_the_users_own_business_is_a_request(text, family):
    ex = extract.read_message(text)
    assert ex.intent == "describe"
    assert ex.family == family


def test_inputs_outside_the_lexicon_are_read_and_said_back(api_client, baselines):
    slots = extract.read_message("weekly sales per store using web traffic and loyalty tier").slots
    assert slots["features"] == ["web_traffic", "loyalty_tier"]
    assert "defaults" not in (
        extract.read_message("use defaults", family_hint="pricing").slots.get("features") or []
    )
    data = say(api_client, "weekly sales forecast per store, 8 weeks ahead, using web traffic")
    assert "I can't add web traffic to a forecasting recipe" in data["reply"]


# --------------------------------------------------------------------------- one follow-up question


def test_period_word_that_could_be_frequency_or_schedule_gets_one_question(api_client, baselines):
    data = say(api_client, "weekly demand forecast per store, 8 weeks ahead, monthly, grocery")
    assert 'You said "monthly" as well as weekly' in data["reply"]
    assert "retraining" not in data["proposal"]["manifest"]
    data = say(api_client, "retraining", data["conversation_id"])
    manifest = data["proposal"]["manifest"]
    assert manifest["retraining"]["triggers"]["schedule"] == "0 6 1 * *"
    assert stage_config(manifest, "feature_prep")["frequency"] == "W"
    assert 'You said "monthly"' not in data["reply"]
    assert_valid(data["proposal"])


def test_a_number_without_its_unit_is_asked_about_and_the_answer_fills_it(api_client, baselines):
    data = say(api_client, "daily demand forecast per store for grocery, horizon of 12")
    assert "A horizon of 12 what" in data["reply"]
    assert stage_config(data["proposal"]["manifest"], "training")["horizon"] == 56  # unchanged meanwhile
    data = say(api_client, "weeks", data["conversation_id"])
    assert stage_config(data["proposal"]["manifest"], "training")["horizon"] == 84
    data = say(api_client, "I don't know", data["conversation_id"])  # no question left about it
    assert "A horizon of 12 what" not in data["reply"]


# --------------------------------------------------------------------------- a conversation


def test_a_conversation_refines_one_proposal(api_client, baselines):
    data = say(api_client, ISSUE_EXAMPLE + ", grocery")
    cid = data["conversation_id"]
    assert data["proposal"]["manifest"]["retraining"]["triggers"]["schedule"] == "0 22 * * 0"
    assert data["proposal"]["manifest"]["deployment"]["schedule"] == "0 6 * * 1"
    data = say(api_client, "make it daily", cid)
    assert stage_config(data["proposal"]["manifest"], "feature_prep")["frequency"] == "D"
    before = data["proposal"]
    data = say(api_client, "what does calibration mean here?", cid)
    assert data["proposal"] == before
    assert data["sources"] and "calibration" in data["reply"].lower()
    data = say(api_client, "create it and run a backtest", cid)
    recipe = Recipe.objects.get(pk=data["created_recipe_id"])
    run = Run.objects.get(recipe=recipe)
    assert run.run_type == RunType.BACKTEST
    assert f"Started backtest run {run.id}" in data["reply"]
    assert "synthetic example data" in data["reply"]  # no dataset of the user's: said


def test_use_another_starting_recipe_instead(api_client, baselines):
    data = say(api_client, "weekly demand forecast for grocery stores, 8 weeks ahead, MAPE under 12%")
    grocery = say(api_client, "create it", data["conversation_id"])["created_recipe_id"]
    data = say(api_client, "weekly demand forecast, 8 weeks ahead, MAPE under 15%, no specific client")
    assert data["proposal"]["base_recipe_id"] == "recipe_forecasting_base"
    data = say(api_client, "use the grocery industry recipe instead", data["conversation_id"])
    assert data["proposal"]["base_recipe_id"] == grocery
    assert data["proposal"]["manifest"]["evaluation"]["metrics"]["MAPE"]["target"] == 0.15
    assert_valid(data["proposal"])


def test_backtest_needs_the_run_permission(viewer, baselines):
    recipe = Recipe.objects.get(pk="recipe_forecasting_base")
    assert "needs the runs.add_run permission" in start_backtest(user=viewer, recipe=recipe)
    assert not Run.objects.filter(recipe=recipe).exists()


def test_out_of_scope_question_gets_a_short_honest_answer(api_client, baselines):
    data = say(api_client, "what's the weather tomorrow?")
    assert data["proposal"] is None
    assert "I can't" in data["reply"] or "I don't" in data["reply"]
    assert len(data["reply"]) < 400


def test_an_edit_answering_a_pending_question_is_an_edit_not_a_name(api_client, baselines):
    data = say(api_client, "Set prices for our range, using weather and holidays")
    assert "I can't add weather to the pricing family" in data["reply"]
    data = say(api_client, "drop the weather", data["conversation_id"])
    assert "no longer asked for: weather" in data["reply"]
    assert "industry: drop" not in data["reply"]


def test_a_question_about_here_answers_for_the_proposals_family(api_client, baselines):
    cid = say(api_client, "Set prices for our grocery range")["conversation_id"]
    data = say(api_client, "what does calibration mean here?", cid)
    assert [s["id"] for s in data["sources"]] == ["metrics-pricing"]
    cid = say(api_client, "daily sales forecast per store for grocery")["conversation_id"]
    data = say(api_client, "what does calibration mean here?", cid)
    assert "The forecasting family has no such term of its own" in data["reply"]
    data = say(api_client, "what does calibration mean in location scoring?", cid)  # named: no "here"
    assert data["sources"][0]["id"].endswith("location-scoring") and "no such term" not in data["reply"]


@pytest.mark.parametrize(
    "text",
    [
        "How do I read the forecast decomposition?",
        "how should we interpret the SHAP waterfall for a forecast?",
    ],
)
def test_a_question_about_reading_an_explanation_is_answered_not_built(api_client, baselines, text):
    data = say(api_client, text)
    assert data["proposal"] is None
    assert "explanations" in [s["id"] for s in data["sources"]], data


def test_an_unclear_answer_repeats_the_pending_question(api_client, baselines):
    cid = say(api_client, "daily sales forecast per store for grocery")["conversation_id"]
    data = say(api_client, "hmm", cid)
    assert "How far ahead should it forecast" in data["reply"]


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("weekly sales forecast for our 25 garden centres", "grain", ["garden_centre_id"]),
        ("monthly demand by depot and brand", "grain", ["depot_id", "brand_id"]),
        ("choose one of four offers for each subscriber", "grain", None),
        ("daily demand forecast using sunshine and school hols", "features", ["weather", "school_holidays"]),
        ("weekly parcel forecast, within about 20% would help", "metrics", {"MAPE": {"target": 0.2}}),
        ("demand forecast, weighted error under 18%", "metrics", {"WAPE": {"target": 0.18}}),
    ],
)
def test_general_rules_read_unseen_wording(text, key, value):
    assert extract.read_message(text).slots.get(key) == value
