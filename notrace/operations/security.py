"""encrypt and decrypt. Runs in the CHILD.

qpdf reads /dev/urandom by path to make AES keys: the sandbox's Landlock policy must
allow that one file (sandbox.policy.Policy.readable_files).
"""
from __future__ import annotations

import secrets

import pikepdf

from notrace.operations._common import Output, open_pdf, pdf_output, save_pdf
from notrace.operations.problems import Problem


def encrypt(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """AES-256 (R6). A reader who opens the file with the owner password has every
    permission, so a restricted permission needs an owner password that differs from the
    user's: without owner_password it is a random one, made here and never shown (the
    report says `owner_password_generated`), so the restrictions hold and nobody can lift
    them; the same one as `password` is refused by the declaration's check. With every
    permission allowed, the owner password defaults to the user password."""
    pdf = open_pdf(inputs[0], password=params.get("current_password"), max_pages=max_pages)
    user = params["password"]
    printing, modify, extract = (params["allow_print"], params["allow_modify"],
                                 params["allow_extract"])
    generated = not params.get("owner_password") and not (printing and modify and extract)
    owner = secrets.token_urlsafe(32) if generated else params.get("owner_password") or user
    allow = pikepdf.Permissions(
        accessibility=True, extract=extract, print_lowres=printing, print_highres=printing,
        modify_annotation=modify, modify_assembly=modify, modify_form=modify,
        modify_other=modify)
    data = save_pdf(pdf, encryption=pikepdf.Encryption(owner=owner, user=user, R=6,
                                                       allow=allow, aes=True))
    report = {"algorithm": "AES-256", "permissions_enforced": owner != user,
              "owner_password_generated": generated}
    return pdf_output(data, report)


def decrypt(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The document without encryption. An input that is not encrypted is refused
    ("not_encrypted"), so a caller learns that the password was not needed."""
    pdf = open_pdf(inputs[0], password=params["password"], max_pages=max_pages)
    if not pdf.is_encrypted:
        raise Problem("not_encrypted", "the document is not encrypted")
    return pdf_output(pdf)
