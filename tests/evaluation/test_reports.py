"""The Markdown report: attack budgets and figures are written for people."""

from cdgan_tf.evaluation import reports


def _results(params):
  entry = {"n": 4, "normal": 0.75, "attack": 0.25, "defense": 0.5, "defense_clean": 0.5,
           "defenses": {"cdgan": {"defense": 0.5, "defense_clean": 0.5}}}
  return {"classifiers": {"clf": entry},
          "attacks": {"pgd_classifier": {"params": params, "classifiers": {
              "clf": {"n": 4, "attack": 0.0, "defenses": {"cdgan": {"defense": 0.25}}}}}}}


def test_budgets_in_255ths_and_no_float_noise():
  text = reports.markdown_table(_results(
      {"eps": 8 / 255, "steps": 10, "step_size": 2 / 255, "decay": 0.1 + 0.2}))
  assert "(eps=8/255, steps=10, step_size=2/255, decay=0.3)" in text
  assert "0.0313" not in text and "0.30000000000000004" not in text


def test_accuracies_are_percent_with_two_decimals():
  text = reports.markdown_table(_results({"eps": 0.5 / 255}))
  assert "| clf | 4 | 75.00 | 25.00 | 50.00 | 50.00 |" in text
  assert "eps=0.5/255" in text
