"""Finding a PKCS#11 token by its label, with SoftHSM2's busy file store in mind."""

from __future__ import annotations

from typing import Any

import pytest
from pkcs11 import exceptions as pkcs11_errors

from vaop.providers import base
from vaop.providers import pkcs11 as pkcs11_provider


class _Library:
    """Answers each look-up with the next of ``answers`` (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.lookups = 0

    def get_token(self, *, token_label: str) -> Any:
        self.lookups += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> _Library:
    fake = _Library()
    monkeypatch.setattr(pkcs11_provider, "_library", lambda module: fake)
    monkeypatch.setattr("vaop.providers.pkcs11.time.sleep", lambda seconds: None)
    return fake


def test_a_token_a_busy_store_did_not_list_is_looked_up_again(library: _Library) -> None:
    token = object()
    library.answers = [pkcs11_errors.NoSuchToken(), pkcs11_errors.GeneralError(), token]
    assert pkcs11_provider.find_token("softhsm2.so", "tenant") is token
    assert library.lookups == 3


def test_a_token_that_is_not_there_says_which_label_to_check(library: _Library) -> None:
    library.answers = [pkcs11_errors.NoSuchToken()]
    with pytest.raises(base.VaultNotFound, match="no single token labelled 'tenant'; check tokenLabel"):
        pkcs11_provider._found("softhsm2.so", "tenant")
    assert library.lookups == pkcs11_provider._LOOKUP_ATTEMPTS
