import httpx


async def test_a_put_is_readable_back_with_its_version(admin: httpx.AsyncClient) -> None:
    value = {"region": "eu10", "subaccount_id": "a1"}
    put = await admin.put("/config/subaccount/acme", json=value)
    assert put.status_code == 201, put.text
    assert put.json() == {
        "kind": "subaccount",
        "name": "acme",
        "version": 1,
        "position": 1,
        "epoch": 1,
    }
    got = await admin.get("/config/subaccount/acme")
    assert got.json() == {"value": value, "version": 1}
