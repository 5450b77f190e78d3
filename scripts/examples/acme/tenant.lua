-- Example tenant "acme": the webhook sources it accepts.
--
-- A source with a secret requires Standard Webhooks signatures
-- (webhook-id, webhook-timestamp, webhook-signature). The secret is read
-- from the environment so that it never sits in the script.
return {
  sources = {
    -- Referral form posts relayed by the website's backend, signed.
    site = {
      secret = env("ACME_SITE_SECRET"),
      keep_headers = { "x-site-form" },
    },
    -- A Zoho CRM workflow webhook: form-encoded, its own id in the body is
    -- not available, so every delivery is stored.
    crm_workflow = { format = "raw", id = "none" },
  },
}
