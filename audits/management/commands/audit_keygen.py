from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand, CommandError

from audits import checkpoint_format, checkpoints
from audits.reports import keys as report_keys
from audits.reports import seal_format


class Command(BaseCommand):
    help = (
        "Generate an Ed25519 key pair for signing audit checkpoints (or, with --report, for "
        "sealing compliance reports) and print the settings lines (or, with --public, print the "
        "public key of the configured signing key, for offline verifiers)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--report",
            action="store_true",
            help="the report key (REPORT_SIGNING_KEY) instead of the checkpoint key",
        )
        parser.add_argument(
            "--public",
            action="store_true",
            help="print the public key that verifies this installation's checkpoints",
        )
        parser.add_argument(
            "--pem-dir",
            metavar="DIR",
            type=Path,
            help="also write the pair as PEM files (private key readable by the owner only)",
        )

    def handle(self, *args, public=False, pem_dir=None, report=False, **options) -> None:
        if report:
            if pem_dir is not None:
                raise CommandError("--pem-dir writes the checkpoint key pair, not a report key.")
            self._report_key(public)
            return
        if public:
            key = checkpoints.signing_key().public_key()
            note = " (the development key derived from SECRET_KEY)"
            development = checkpoints.uses_development_key()
            self.stderr.write(f"{checkpoint_format.key_id(key)}{note if development else ''}")
            self.stdout.write(checkpoint_format.encode_public(key))
            return
        private = Ed25519PrivateKey.generate()
        if pem_dir is not None:
            self._write_pem(private, pem_dir)
        self.stdout.write(
            f"AUDIT_CHECKPOINT_SIGNING_KEY={checkpoint_format.encode_private(private)}"
        )
        self.stdout.write(
            f"AUDIT_CHECKPOINT_PUBLIC_KEY={checkpoint_format.encode_public(private.public_key())}"
        )
        self.stderr.write(
            f"Key {checkpoint_format.key_id(private.public_key())}: keep the signing key where "
            "only the checkpoint writer (Celery beat's worker) can read it, never with the "
            "database; give the public key to auditors."
        )

    def _report_key(self, public: bool) -> None:
        if public:
            key = report_keys.published()
            note = " (the development key derived from SECRET_KEY)"
            self.stderr.write(f"{key['fingerprint']}{note if key['development_key'] else ''}")
            self.stdout.write(str(key["public_key"]))
            return
        private = Ed25519PrivateKey.generate()
        self.stdout.write(f"REPORT_SIGNING_KEY={checkpoint_format.encode_private(private)}")
        self.stderr.write(
            f"Report key {seal_format.fingerprint(private.public_key())}: keep it where the web "
            "and worker processes can read it; auditors verify reports with its public key "
            "(published at /reports/key/)."
        )

    def _write_pem(self, private: Ed25519PrivateKey, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        secret = directory / "audit-checkpoint-signing.pem"
        if secret.exists():
            raise CommandError(f"{secret} exists: refusing to overwrite a signing key.")
        secret.touch(mode=0o600)
        secret.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (directory / "audit-checkpoint-public.pem").write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.stderr.write(f"Wrote {secret} and {directory / 'audit-checkpoint-public.pem'}.")
