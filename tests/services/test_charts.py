"""The node's SVG charts and the bounded history behind them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from p2pnode.services.api.charts import MAX_SERIES, line_chart
from p2pnode.services.api.history import HEAD_SAMPLES, ChainHistory

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_is_well_formed_svg_with_one_polyline_per_series() -> None:
    svg = line_chart("Emission <b>&", [("uid 0", [(1, 0.5), (2, 0.75)]), ("uid 1", [(1, 0.1), (2, 0.2)])],
                     x_label="epoch", y_label="TAO")
    root = ET.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("data-name") for line in lines] == ["uid 0", "uid 1"]
    assert all(len(line.get("points", "").split()) == 2 for line in lines)
    assert len(root.findall(f"{SVG}circle")) == 4  # short series get a dot per point
    assert "Emission <b>&" in [t.text for t in root.iter(f"{SVG}text")]  # escaped in the document, text when parsed
    assert "<b>" not in svg


def test_labels_from_the_chain_cannot_become_markup() -> None:
    hostile = '"/><script>alert(1)</script>'
    root = ET.fromstring(line_chart(hostile, [(hostile, [(0, 1), (1, 2)])]))
    assert not list(root.iter(f"{SVG}script"))
    assert root.find(f"{SVG}polyline").get("data-name") == hostile  # type: ignore[union-attr]


def test_empty_and_flat_series_still_draw() -> None:
    assert "no data yet" in line_chart("t", [])
    root = ET.fromstring(line_chart("t", [("flat", [(5, 3), (5, 3)])]))
    assert root.find(f"{SVG}polyline") is not None
    many = line_chart("t", [(f"s{i}", [(0, i)]) for i in range(MAX_SERIES + 5)])
    assert many.count("<polyline") == MAX_SERIES


def test_head_history_is_bounded() -> None:
    history = ChainHistory()
    for height in range(HEAD_SAMPLES * 3):
        history.record_head(height, max(0, height - 5), height * 500)
    lag = history.finality_lag()
    assert len(lag) == HEAD_SAMPLES and lag[-1] == (HEAD_SAMPLES * 3 - 1, 5)
