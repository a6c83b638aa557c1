//! The embedded identity provider (local backend): password hashing and
//! rules, TOTP, signing keys, token minting, throttling.
