-- A registered bundle verification key keeps the signature algorithm it was
-- registered for: an RSA key signs RS256…RS512 or PS256…PS512 alike, and
-- OPA's bundle verification pins one. '' is a key registered before this
-- column: RS256 for RSA keys, the curve's ES algorithm for ECDSA keys, as
-- then. The column is written once, with its row.
ALTER TABLE policy_verification_keys ADD COLUMN algorithm text NOT NULL DEFAULT ''
    CHECK (algorithm IN ('', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'));
