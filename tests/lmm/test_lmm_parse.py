"""The answer parser reads every supported notation and never invents a coordinate."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodemo.lmm.parse import parse_coordinate

LAT = st.floats(min_value=-90, max_value=90, allow_nan=False, allow_infinity=False)
LON = st.floats(min_value=-180, max_value=180, allow_nan=False, allow_infinity=False)
PROSE = st.sampled_from(
    [
        "",
        "My best guess: ",
        "Based on the architecture and vegetation, I'd say ",
        "The photo was likely taken at ",
        "Answer:\n",
    ]
)
TAIL = st.sampled_from(["", ".", " (a rough estimate).", "\nI am fairly confident.", " ... "])


def _dms(value: float) -> tuple[int, int, float]:
    v = abs(value)
    d = int(v)
    m = int((v - d) * 60)
    s = round((v - d - m / 60) * 3600, 2)
    if s >= 60:  # rounding carried over
        s = 59.99
    return d, m, s


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


@settings(max_examples=150, deadline=None)
@given(lat=LAT, lon=LON, pre=PROSE, post=TAIL, fence=st.booleans(), lat_key=st.sampled_from(["latitude", "lat"]))
def test_json_anywhere(lat, lon, pre, post, fence, lat_key):
    body = json.dumps({lat_key: round(lat, 6), "longitude": round(lon, 6)})
    text = f"{pre}```json\n{body}\n```{post}" if fence else f"{pre}{body}{post}"
    got = parse_coordinate(text)
    assert got.ok and got.method == "json"
    assert _close(got.lat, round(lat, 6), 1e-9) and _close(got.lon, round(lon, 6), 1e-9)


@settings(max_examples=150, deadline=None)
@given(lat=LAT, lon=LON, pre=PROSE, post=TAIL, decimals=st.integers(0, 6), brackets=st.sampled_from(["{}", "()", "[]", ""]))
def test_decimal_pair(lat, lon, pre, post, decimals, brackets):
    a, b = (f"{lat:.{decimals}f}", f"{lon:.{decimals}f}") if decimals else (str(round(lat)), str(round(lon)))
    if brackets == "{}":
        brackets = ""
    pair = f"{a}, {b}" if not brackets else f"{brackets[0]}{a}, {b}{brackets[1]}"
    got = parse_coordinate(pre + pair + post)
    assert got.ok, got.reason
    assert got.lat == float(a) and got.lon == float(b)


@settings(max_examples=150, deadline=None)
@given(lat=LAT, lon=LON, letters_first=st.booleans(), swap=st.booleans(), deg=st.booleans(), sep=st.sampled_from([", ", " ", "; ", " / "]))
def test_hemisphere_letters(lat, lon, letters_first, swap, deg, sep):
    lat_s = f"{abs(lat):.4f}" + ("°" if deg else "")
    lon_s = f"{abs(lon):.4f}" + ("°" if deg else "")
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    if letters_first:
        a, b = f"{ns}{lat_s}", f"{ew} {lon_s}"
    else:
        a, b = f"{lat_s} {ns}", f"{lon_s}{ew}"
    text = f"{b}{sep}{a}" if swap else f"{a}{sep}{b}"  # hemisphere letters decide, not order
    got = parse_coordinate("I think it is " + text)
    assert got.ok, (text, got.reason)
    assert _close(got.lat, float(f"{lat:.4f}") if lat >= 0 else -float(f"{abs(lat):.4f}"), 1e-9)
    assert _close(abs(got.lon), float(f"{abs(lon):.4f}"), 1e-9)
    assert (got.lon < 0) == (ew == "W" and float(f"{abs(lon):.4f}") > 0)


@settings(max_examples=150, deadline=None)
@given(lat=LAT, lon=LON, style=st.sampled_from(["ascii", "typographic", "spaced", "two-quotes"]))
def test_degrees_minutes_seconds(lat, lon, style):
    def fmt(value: float, pos: str, neg: str) -> str:
        d, m, s = _dms(value)
        h = pos if value >= 0 else neg
        if style == "ascii":
            return f"{d}°{m}'{s}\"{h}"
        if style == "typographic":
            return f"{d}°{m}′{s}″{h}"
        if style == "spaced":
            return f"{d}° {m}' {s}\" {h}"
        return f"{d}°{m}'{s}''{h}"

    text = f"Coordinates: {fmt(lat, 'N', 'S')} {fmt(lon, 'E', 'W')}"
    got = parse_coordinate(text)
    assert got.ok and got.method == "dms", (text, got.reason)
    d, m, s = _dms(lat)
    want_lat = math.copysign(d + m / 60 + s / 3600, lat) if lat != 0 else 0.0
    d, m, s = _dms(lon)
    want_lon = math.copysign(d + m / 60 + s / 3600, lon) if lon != 0 else 0.0
    assert _close(abs(got.lat), abs(want_lat), 1e-6) and _close(abs(got.lon), abs(want_lon), 1e-6)
    if abs(want_lat) > 0:
        assert (got.lat < 0) == (lat < 0)
    if abs(want_lon) > 0:
        assert (got.lon < 0) == (lon < 0)


@pytest.mark.parametrize(
    "text, lat, lon",
    [
        ("Latitude: 40.7128 N, Longitude: 74.0060 W", 40.7128, -74.006),
        ("the latitude is 35.68 and the longitude is 139.69", 35.68, 139.69),
        ("lat=48.85 lng=2.35", 48.85, 2.35),
        ('{"location": {"lat": 1.29, "lng": 103.85}}', 1.29, 103.85),
        ('{"latitude": "-33.87", "longitude": "151.21"}', -33.87, 151.21),
        ('{"latitude": "33.87 S", "longitude": "151.21 E"}', -33.87, 151.21),
        ("48.85 degrees north, 2.35 degrees east", 48.85, 2.35),
        ("\u221233.86, 151.21", -33.86, 151.21),  # Unicode minus sign
        ("2.35 E, 48.85 N", 48.85, 2.35),
        ('{"latitude": 46, "longitude": 7}', 46.0, 7.0),
        ('{"latitude": 22.6, "longitude": 9.5, "altitude": "31', 22.6, 9.5),  # truncated generation
    ],
)
def test_known_notations(text, lat, lon):
    got = parse_coordinate(text)
    assert got.ok, got.reason
    assert got.lat == pytest.approx(lat) and got.lon == pytest.approx(lon)


@pytest.mark.parametrize(
    "text, reason_part",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        (None, "empty"),
        ("I cannot determine the location from this photo.", "no coordinate"),
        ("This church was built in 1887, 1923 it was restored.", "latitude 1887 outside"),
        ("In 2015, 300 people lived here.", "no coordinate"),
        ("Call +1 212-555-0187 or 020 7946 0958.", "no coordinate"),
        ("The lake is 1.2 km, maybe 3 km wide.", "no coordinate"),
        ("Requires version 3.2.1, 4.5.6 or later", "no coordinate"),
        ("python 3.11, 2.0", "no coordinate"),
        ("Taken on 2019-05-12, 10:30 local time", "no coordinate"),
        ("1e308, 5", "no coordinate"),
        ("nan, inf", "no coordinate"),
        ('{"latitude": NaN, "longitude": 2.0}', "finite"),
        ('{"latitude": Infinity, "longitude": 2.0}', "finite"),
        ('{"latitude": 1e400, "longitude": 2.0}', "finite"),
        ('{"latitude": 95.0, "longitude": 10.0}', "latitude 95"),
        ('{"latitude": 45.0, "longitude": 200.0}', "longitude 200"),
        ("123456789, 987654321", "outside"),
        ("91.5, 10", "latitude 91.5"),
        ('{"latitude": 46.0, "longitude": -', "without longitude"),
        ('{"latitude": "somewhere north", "longitude": "east"}', "not a number"),
        ("48°75'N 2°10'E", "below 60"),
        ("48.85 N, 50.1 S", "no coordinate"),  # two latitudes are not a pair
        ("-33.9 S, 151.2 E", "minus sign and hemisphere"),
    ],
)
def test_rejections_keep_a_reason(text, reason_part):
    got = parse_coordinate(text)
    assert not got.ok and got.lat is None and got.lon is None
    assert reason_part in got.reason


def test_unparsable_never_becomes_null_island():
    """G3 maps every unparsable answer to (0, 0); ours rejects it and keeps the reason."""
    for text in ["", "Sorry, I can't help.", "lat: unknown, lon: unknown", "{}", '{"latitude": null}', "0"]:
        got = parse_coordinate(text)
        assert not got.ok and (got.lat, got.lon) == (None, None) and got.reason


@pytest.mark.parametrize("text", ["0, 0", "0.0, 0.0", '{"latitude": 0, "longitude": 0}', "0° N, 0° E"])
def test_literal_zero_zero_is_accepted_only_when_said(text):
    got = parse_coordinate(text)
    assert got.ok and (got.lat, got.lon) == (0.0, 0.0)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Nd", "No", "Nl", "Cs")), max_size=200))
def test_text_without_digits_yields_nothing(text):
    got = parse_coordinate(text)
    assert not got.ok and got.reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="123456789 ,.;:-abcNSEW°'\"{}[]()latitudeon", max_size=80))
def test_no_zero_zero_without_zeros(text):
    """Whatever the text, (0, 0) can only come from a text that writes zeros."""
    got = parse_coordinate(text)
    if got.ok:
        assert -90 <= got.lat <= 90 and -180 <= got.lon <= 180
        assert (got.lat, got.lon) != (0.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_out_of_range_or_non_finite_json_is_rejected(lat, lon):
    text = json.dumps({"latitude": lat, "longitude": lon})
    got = parse_coordinate(text)
    valid = math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180
    assert got.ok == valid
    if valid:
        assert (got.lat, got.lon) == (lat, lon)
