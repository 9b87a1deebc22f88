"""The login page: its two fields are styled alike (the username field once had no type and
missed the width rule the password field got)."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_it_gives_both_fields_the_same_type_rule_and_width_class(client):
    page = client.get("/accounts/login/").content.decode()
    username = re.search(r"<input id=\"id_username\"[^>]*>", page).group(0)
    password = re.search(r"<input id=\"id_password\"[^>]*>", page).group(0)
    assert 'type="text"' in username and 'type="password"' in password
    assert 'class="login-input"' in username and 'class="login-input"' in password
