def test_code_flow_end_to_end(flow):
    code = flow.login_code()
    resp = flow.redeem(code)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and "id_token" in body and "refresh_token" in body
    info = flow.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.get_json()["email"] == "seller@example.com"
