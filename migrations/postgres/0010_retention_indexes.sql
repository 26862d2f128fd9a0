-- The retention sweep finds a member's topics and queued mail by their author or recipient;
-- without these, each swept member would scan both tables.
CREATE INDEX topics_user ON topics(user_id);
CREATE INDEX mail_outbox_user ON mail_outbox(user_id);
