"""A SoftHSM2 token directory of our own (Debian softhsm2), and keys made inside the token."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pkcs11 import Attribute, KeyType
from pkcs11.util.ec import encode_named_curve_parameters

from vaop.providers import pkcs11 as pkcs11_provider
from vaopdev import environment

MODULE = environment.SOFTHSM_MODULE
TOKEN = "tenant"
PIN = "1234"
# The platform's own token (platformKeys.provider pkcs11), made up front as an HSM team would: a
# process sees only the tokens there were when it first loaded the module.
PLATFORM_TOKEN = "platform"
PLATFORM_PIN = "2468"


def configure(folder: Path) -> Path:
    """A softhsm2.conf whose tokens live in ``folder``; one token labelled TOKEN, initialised."""
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    init_token(conf, TOKEN, PIN)
    init_token(conf, PLATFORM_TOKEN, PLATFORM_PIN)
    return conf


def init_token(conf: Path, label: str, pin: str) -> None:
    """A new token in the first free slot, as the HSM's administrator makes one."""
    subprocess.run(
        [
            "/usr/bin/softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "87654321",
        ],
        env={"SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )


def add_rsa_version(
    label: str,
    version: int,
    *,
    bits: int = 2048,
    destroyable: bool = False,
    token: str = TOKEN,
    pin: str = PIN,
) -> None:
    with pkcs11_provider.find_token(MODULE, token).open(rw=True, user_pin=pin) as session:
        session.generate_keypair(
            KeyType.RSA,
            bits,
            id=str(version).encode(),
            label=label,
            store=True,
            private_template={Attribute.DESTROYABLE: destroyable},
        )


def add_ec_version(label: str, version: int) -> None:
    with pkcs11_provider.find_token(MODULE, TOKEN).open(rw=True, user_pin=PIN) as session:
        parameters = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        parameters.generate_keypair(
            id=str(version).encode(), label=label, store=True, private_template={Attribute.DESTROYABLE: False}
        )
