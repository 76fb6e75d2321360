"""The Keras example script runs: fit, evaluate, routing metrics, SavedModel export."""
from namedmesh.keras import example


def test_example_trains_reports_routing_metrics_and_exports(capsys):
    assert example.main(["--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained 20 steps on one device: loss ")
    for metric in ("moe_aux_loss", "moe_outer_fraction_dropped", "moe_outer_router_confidence",
                   "moe_inner_fraction_dropped", "moe_inner_router_confidence"):
        assert "  " + metric in out, metric
    assert "SavedModel export gives the model's outputs: True" in out
