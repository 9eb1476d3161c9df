"""Lead notifications: templates, email (SMTP) and SMS (Twilio) senders, and the outbox worker that
delivers what ``lead_notifications`` owes (docs/leads.md, "Notifications")."""
