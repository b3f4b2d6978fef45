-- Whether the provider had verified the address when the identity was
-- linked (later sign-ins update `email_verified`, never this). A password
-- reset, an email verification or a claim of the account unlinks the
-- identities linked on an unverified address: they may be someone else's.
-- Keep in step with migrations/sqlite/0009_identity_trust.sql.
ALTER TABLE user_identities ADD COLUMN linked_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Identities linked before this was kept count as verified only when the
-- provider says so now and for the account's own address.
UPDATE user_identities SET linked_verified = TRUE
WHERE email_verified
  AND EXISTS (SELECT 1 FROM users u
              WHERE u.id = user_identities.user_id
                AND lower(u.email) = lower(user_identities.email));
