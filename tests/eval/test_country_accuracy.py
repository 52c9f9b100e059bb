"""Country lookup in the bundled Natural Earth outlines (GeoPandas) and the per-country accuracy of a run."""

from __future__ import annotations

import html
import math

import numpy as np
import pytest

from geodemo.data import load_examples
from geodemo.data.countries import NO_COUNTRY, countries_at
from geodemo.eval.countries import AT_SEA, COUNTRY_COLUMNS, country_accuracy, write_country_table
from geodemo.eval.harness import evaluate
from geodemo.eval.metrics import MAX_ERROR_KM
from geodemo.viz.country_map import accuracy_colour, run_country_map_iframe, write_country_map

PARIS, LYON, ROME, MADRID = (48.8566, 2.3522), (45.764, 4.8357), (41.9028, 12.4964), (40.4168, -3.7038)


def test_points_fall_in_their_countries_and_the_open_sea_in_none():
    coords = np.array([PARIS, ROME, (40.7128, -74.0060), (35.68, 139.69), (64.14, -21.94), (-33.87, 151.21),
                       (0.0, -30.0), (math.nan, math.nan), (-17.7, 178.0 + 360.0)])
    assert countries_at(coords) == ["France", "Italy", "United States of America", "Japan", "Iceland", "Australia",
                                    NO_COUNTRY, NO_COUNTRY, "Fiji"]


def test_a_coastal_point_the_coarse_outline_leaves_at_sea_is_joined_within_max_km():
    new_york = np.array([(40.70, -74.00)])  # Lower Manhattan: outside the simplified 1:110m outline by ~300 m
    assert countries_at(new_york, max_km=5.0) == ["United States of America"]
    assert countries_at(new_york, max_km=0.0) == [NO_COUNTRY]


def test_country_accuracy_groups_photos_by_their_true_country():
    truth = np.array([PARIS, LYON, ROME, (0.0, -30.0)])
    pred = np.array([PARIS, MADRID, (math.nan, math.nan), (1.0, -30.0)])
    table = country_accuracy(pred, truth).set_index("country")
    assert list(table.reset_index().columns) == list(COUNTRY_COLUMNS)
    assert list(table.index) == ["France", AT_SEA, "Italy"]  # most photos first, then by name
    france = table.loc["France"]
    assert france["photos"] == 2 and france["same_country"] == 0.5  # Paris answered in France, Lyon in Spain
    assert (france["acc@1"], france["acc@750"], france["acc@2500"]) == (0.5, 0.5, 1.0)  # Lyon-Madrid is ~1,000 km
    assert 450 < france["median_km"] < 550  # the mean of 0 and ~1,000 km
    italy = table.loc["Italy"]  # no answer: no country, the maximum error
    assert italy["same_country"] == 0.0 and italy["acc@2500"] == 0.0 and italy["median_km"] == pytest.approx(MAX_ERROR_KM)
    sea = table.loc[AT_SEA]  # 111 km off: right distance, but no country to be right about
    assert sea["same_country"] == 0.0 and (sea["acc@25"], sea["acc@200"]) == (0.0, 1.0)


class _AnswersParis:
    name = "paris"

    def predict(self, batch):
        return np.tile(np.array(PARIS), (len(batch), 1))


def test_an_evaluated_run_gets_its_country_table_and_map(tmp_path):
    examples = load_examples()
    report = evaluate(_AnswersParis(), examples, tmp_path / "run", progress=False)
    table, path = write_country_table(report.out_dir)
    assert path.read_text().splitlines()[0] == ",".join(COUNTRY_COLUMNS)
    assert table["photos"].sum() == len(examples) == report.metrics["n"]
    rows = table.set_index("country")
    assert {"France", "Spain", "Hungary", "Italy", "China", "United States of America"} <= set(rows.index)
    assert rows.loc["France", "same_country"] == 1.0  # Rennes answered with Paris
    assert rows.drop(index="France")["same_country"].eq(0.0).all()
    assert rows.loc["France", "acc@750"] == 1.0 and rows.loc["France", "acc@200"] == 0.0  # ~310 km
    assert rows.loc["Spain", "acc@750"] == 0.0 and rows.loc["Spain", "acc@2500"] == 1.0  # A Coruna, ~1,030 km
    assert rows.loc["United States of America", "acc@2500"] == 0.0  # near Chicago

    doc = write_country_map(table, tmp_path / "run" / "countries.html").read_text()
    assert "leaflet" in doc.lower() and "unpkg" not in doc and "cdn" not in doc.lower()  # works offline
    assert accuracy_colour(1.0) in doc and accuracy_colour(0.0) in doc  # France green, Spain red
    assert '"name": "France", "photos": "1", "same_country": "100%", "share": "100%"' in doc  # hover row


def test_the_explorer_map_reads_a_runs_table_or_computes_it_without_writing(tmp_path):
    run = evaluate(_AnswersParis(), load_examples(), tmp_path / "run", progress=False).out_dir
    before = sorted(p.name for p in run.iterdir())
    frame = html.unescape(run_country_map_iframe(run))
    assert sorted(p.name for p in run.iterdir()) == before  # the explorer never writes to a runs folder
    assert frame.startswith("<gd-map-") and '"name": "France", "photos": "1", "same_country": "100%"' in frame

    table, _ = write_country_table(run)  # the saved table is what the map shows
    table.loc[table["country"] == "France", ["same_country", "acc@750"]] = 0.0
    table.to_csv(run / "countries.csv", index=False)
    frame = html.unescape(run_country_map_iframe(run))
    assert '"name": "France", "photos": "1", "same_country": "0%", "share": "0%"' in frame
