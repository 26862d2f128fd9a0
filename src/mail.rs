//! Email: the messages Covenant writes, and the worker that delivers the outbox.
//!
//! A message is queued in the same transaction as the change it reports, under an idempotency
//! key, so it is neither lost when the process dies nor queued twice for the same event. The
//! worker claims due messages, hands them to the transport and marks them sent; a message whose
//! claim lapses (the node died mid-send) is tried again. The file transport names each file by
//! the message's key, so a retry rewrites the same file instead of adding a copy; over SMTP the
//! Message-ID is derived from the key, for the same reason.

use crate::config::{Config, MailTransportKind, SmtpSecurity};
use crate::store::{self, QueuedMail, Store, Tx};
use anyhow::Context;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One message, before it is queued.
pub struct Mail {
    pub subject: String,
    pub body: String,
}

impl Mail {
    pub fn verify_email(site: &str, username: &str, link: &str) -> Self {
        Self {
            subject: format!("Confirm your email address for {site}"),
            body: format!(
                "Hello {username},\n\n\
                 Someone, probably you, opened an account on {site} with this address.\n\
                 To confirm it, open this link within 48 hours:\n\n{link}\n\n\
                 If it was not you, ignore this message: the account stays unconfirmed and \
                 nothing more will be sent.\n"
            ),
        }
    }

    pub fn password_reset(site: &str, username: &str, link: &str) -> Self {
        Self {
            subject: format!("Reset your password on {site}"),
            body: format!(
                "Hello {username},\n\n\
                 A new password was asked for your account on {site}.\n\
                 To choose one, open this link within the hour:\n\n{link}\n\n\
                 If you did not ask, ignore this message: your password stays as it is.\n"
            ),
        }
    }

    /// Tells a member that their account was signed in to from a device not seen before.
    pub fn new_device_sign_in(
        site: &str,
        username: &str,
        device: &str,
        when: &str,
        link: &str,
    ) -> Self {
        let device = if device.trim().is_empty() {
            "an unnamed browser or app"
        } else {
            device
        };
        Self {
            subject: format!("New sign-in to your {site} account"),
            body: format!(
                "Hello {username},\n\n\
                 Your account on {site} was signed in to at {when} from a device we had not \
                 seen before:\n\n{device}\n\n\
                 If it was you, there is nothing to do. If not, change your password and end \
                 the sessions you do not know on your security page:\n\n{link}\n"
            ),
        }
    }

    /// Tells a member that their unused account will be closed (the policy's inactivity
    /// limit) unless they sign in before `closes_on`.
    pub fn inactivity_warning(site: &str, username: &str, closes_on: &str, link: &str) -> Self {
        Self {
            subject: format!("Your {site} account will be closed on {closes_on}"),
            body: format!(
                "Hello {username},\n\n\
                 Your account on {site} has not been used for a long time. Our privacy policy \
                 says we do not keep unused accounts for ever, so it will be closed on \
                 {closes_on}.\n\n\
                 To keep it, sign in before then:\n\n{link}\n\n\
                 If you let it close, you will not be able to sign in again; what you posted \
                 and what we hold about you then follow the rules for closed accounts in our \
                 privacy policy.\n"
            ),
        }
    }

    /// Tells a member that their password was changed.
    pub fn password_changed(site: &str, username: &str, link: &str) -> Self {
        Self {
            subject: format!("Your {site} password was changed"),
            body: format!(
                "Hello {username},\n\n\
                 The password of your account on {site} was just changed.\n\
                 If it was not you, reset your password at once and review your security \
                 page:\n\n{link}\n"
            ),
        }
    }

    /// Tells a member that 2-step verification was turned on or off.
    pub fn two_factor_changed(site: &str, username: &str, enabled: bool, link: &str) -> Self {
        let (state, subject) = if enabled {
            ("turned on", "2-step verification is on")
        } else {
            ("turned off", "2-step verification is off")
        };
        Self {
            subject: format!("{subject} for your {site} account"),
            body: format!(
                "Hello {username},\n\n\
                 2-step verification was just {state} for your account on {site}.\n\
                 If it was not you, reset your password at once and review your security \
                 page:\n\n{link}\n"
            ),
        }
    }

    /// Asks the owner of a new address to confirm it for the member's account (issue 8).
    pub fn email_change_confirm(site: &str, username: &str, hours: i64, link: &str) -> Self {
        Self {
            subject: format!("Confirm your new email address for {site}"),
            body: format!(
                "Hello {username},\n\n\
                 You asked to use this address for your account on {site}.\n\
                 To confirm it, open this link within {hours} hours:\n\n{link}\n\n\
                 Until you do, your account keeps its current address. If it was not you, \
                 ignore this message: nothing changes.\n"
            ),
        }
    }

    /// Tells the owner of an address that already has an account that another account asked to
    /// use it: nothing changed (the asking member is told the same as for any address).
    pub fn email_change_address_taken(site: &str, link: &str) -> Self {
        Self {
            subject: format!("Your email address on {site}"),
            body: format!(
                "Hello,\n\n\
                 Someone asked to use this address for an account on {site}, but it already \
                 belongs to an account there, so nothing changed.\n\
                 If you have forgotten your password, you can choose a new one here:\n\n\
                 {link}\n\n\
                 If you did not ask, there is nothing to do.\n"
            ),
        }
    }

    /// Tells the member, at the current address, that a change to another address was asked
    /// (`masked`: the new address with most of it hidden).
    pub fn email_change_requested(site: &str, username: &str, masked: &str, link: &str) -> Self {
        Self {
            subject: format!("A change of your {site} email address was asked"),
            body: format!(
                "Hello {username},\n\n\
                 A change of your account's email address on {site} to {masked} was just \
                 asked. It happens only once the link we sent to that address is opened.\n\n\
                 If it was not you, someone may know your password or be using your device: \
                 change your password and end the sessions you do not know on your security \
                 page, and the change will not happen:\n\n{link}\n"
            ),
        }
    }

    /// Tells the member, at the address they had, that their address was changed.
    pub fn email_changed(
        site: &str,
        username: &str,
        masked: &str,
        link: &str,
        contact: Option<&str>,
    ) -> Self {
        let help = match contact {
            Some(contact) => format!(
                "If it was not you, your account may be in someone else's hands: write to \
                 {contact} from this address, which was the account's until now, and we will \
                 help you take it back. "
            ),
            None => "If it was not you, your account may be in someone else's hands: \
                     reply to the forum's operators from this address, which was the \
                     account's until now, and they will help you take it back. "
                .to_string(),
        };
        Self {
            subject: format!("Your {site} email address was changed"),
            body: format!(
                "Hello {username},\n\n\
                 The email address of your account on {site} was just changed to {masked}. \
                 We will not write to this address about the account any more.\n\n\
                 {help}Then change your password and review your security page:\n\n{link}\n"
            ),
        }
    }

    /// An address with most of it hidden, for a message to someone who may not own it: the
    /// first character of the local part and of the domain, and the domain's last label
    /// (`a***@e***.org`).
    pub fn masked_address(address: &str) -> String {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        let first = |text: &str| text.chars().next().map(String::from).unwrap_or_default();
        let (name, top) = domain.rsplit_once('.').unwrap_or((domain, ""));
        let top = if top.is_empty() {
            String::new()
        } else {
            format!(".{top}")
        };
        format!("{}***@{}***{top}", first(local), first(name))
    }

    /// Asks a parent to agree before their child's account can post (promise M1).
    pub fn parental_consent(site: &str, username: &str, link: &str) -> Self {
        Self {
            subject: format!("Your child asks to join {site}"),
            body: format!(
                "Hello,\n\n\
                 Someone who says they are your child opened the account \"{username}\" on {site} \
                 and gave this address as a parent's. Where they live, the law asks for a \
                 parent's consent before a person of their age can use the forum.\n\n\
                 To read what the account involves and decide, open this link within 7 days:\n\n\
                 {link}\n\n\
                 If you do nothing, the account stays unable to post. You can also ask us to \
                 delete the account and everything it holds from the privacy page.\n"
            ),
        }
    }

    /// Tells a member that their data was disclosed to a third party or an authority (A3).
    #[allow(clippy::too_many_arguments)]
    pub fn disclosure_notice(
        site: &str,
        username: &str,
        basis: &str,
        recipient: &str,
        reference: &str,
        categories: &[String],
        day: &str,
        link: &str,
    ) -> Self {
        let reference = if reference.is_empty() {
            String::new()
        } else {
            format!(" (their reference: {reference})")
        };
        let list: String = categories.iter().map(|c| format!("- {c}\n")).collect();
        Self {
            subject: format!("{site} disclosed some of your data"),
            body: format!(
                "Hello {username},\n\n\
                 On {day}, {site} disclosed some of your personal data to {recipient}{reference}, \
                 in response to {basis}. Our privacy policy allows this only on such a basis, \
                 and every disclosure is recorded.\n\n\
                 The data disclosed was of these kinds:\n\n{list}\n\
                 The record is part of the copy of your data you can ask for on your privacy \
                 page, where you can also exercise your other rights:\n\n{link}\n"
            ),
        }
    }

    /// Queues the message in the caller's transaction. Returns false if `key` was queued before.
    pub async fn enqueue(
        &self,
        store: &Store,
        tx: &mut Tx,
        key: &str,
        recipient: &str,
        user_id: Option<i64>,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.enqueue_with(store, tx, key, recipient, user_id, now, None, None)
            .await
    }

    /// Queues a privacy request's message: its body is sealed under the key of submission
    /// `submission_id` (request correspondence, R8).
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_for_submission(
        &self,
        store: &Store,
        tx: &mut Tx,
        key: &str,
        recipient: &str,
        user_id: Option<i64>,
        submission_id: i64,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.enqueue_with(
            store,
            tx,
            key,
            recipient,
            user_id,
            now,
            None,
            Some(submission_id),
        )
        .await
    }

    /// Queues a non-essential message (product news), which carries a one-click unsubscribe
    /// address (RFC 8058) in its headers.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_unsubscribable(
        &self,
        store: &Store,
        tx: &mut Tx,
        key: &str,
        recipient: &str,
        user_id: i64,
        now: i64,
        unsubscribe_url: &str,
    ) -> anyhow::Result<bool> {
        self.enqueue_with(
            store,
            tx,
            key,
            recipient,
            Some(user_id),
            now,
            Some(unsubscribe_url),
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn enqueue_with(
        &self,
        store: &Store,
        tx: &mut Tx,
        key: &str,
        recipient: &str,
        user_id: Option<i64>,
        now: i64,
        list_unsubscribe: Option<&str>,
        submission_id: Option<i64>,
    ) -> anyhow::Result<bool> {
        store::enqueue_mail(
            store,
            tx,
            &store::OutgoingMail {
                idempotency_key: key,
                recipient,
                user_id,
                subject: &self.subject,
                body_text: &self.body,
                now,
                list_unsubscribe,
                submission_id,
            },
        )
        .await
    }
}

enum Transport {
    Folder(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Delivers the outbox.
#[derive(Clone)]
pub struct Mailer {
    store: Store,
    gate: crate::purpose::PurposeGate,
    transport: Arc<Transport>,
    from: Mailbox,
    poll: Duration,
    lease_seconds: i64,
    wake: Arc<Notify>,
}

const BATCH: i64 = 50;

impl Mailer {
    pub fn new(
        store: Store,
        config: &Config,
        gate: crate::purpose::PurposeGate,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .mail
            .from
            .parse()
            .context("mail.from is not a valid sender address")?;
        let transport = match config.mail.transport {
            MailTransportKind::File => Transport::Folder(config.data_dir.join("mail")),
            MailTransportKind::Smtp => {
                let mail = &config.mail;
                let builder = match mail.smtp_security {
                    SmtpSecurity::Tls => {
                        AsyncSmtpTransport::<Tokio1Executor>::relay(&mail.smtp_host)?
                    }
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&mail.smtp_host)?
                    }
                    SmtpSecurity::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&mail.smtp_host)
                    }
                };
                let mut builder = builder.port(mail.smtp_port);
                if !mail.smtp_username.is_empty() {
                    builder = builder.credentials(Credentials::new(
                        mail.smtp_username.clone(),
                        mail.smtp_password.clone(),
                    ));
                }
                Transport::Smtp(builder.build())
            }
        };
        Ok(Self {
            store,
            gate,
            transport: Arc::new(transport),
            from,
            poll: Duration::from_secs(config.mail.poll_seconds.max(1)),
            lease_seconds: config.mail.lease_seconds.clamp(1, 86_400) as i64,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Tells the worker that something was queued, so it need not wait for its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers every message that is due now; returns how many were sent.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let mut sent = 0;
        loop {
            let now = crate::now();
            let batch = self
                .store
                .claim_due_mail(now, now + self.lease_seconds, BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(sent);
            }
            for mail in batch {
                // The purpose gate: a member who restricted processing gets only the mail
                // security and the law need; the rest stays in the outbox, marked withheld.
                if !self
                    .gate
                    .allows_mail(&mail.idempotency_key, mail.user_id)
                    .await?
                {
                    self.store
                        .mark_mail_withheld(mail.id, crate::now(), store::WITHHELD_RESTRICTED)
                        .await?;
                    tracing::info!(mail_id = mail.id, "email withheld: processing restricted");
                    continue;
                }
                match self.transmit(&mail).await {
                    Ok(()) => {
                        self.store.mark_mail_sent(mail.id, crate::now()).await?;
                        sent += 1;
                    }
                    Err(error) => {
                        let delay = (30_i64 << mail.attempts.clamp(0, 10)).min(6 * 3600);
                        tracing::warn!(mail_id = mail.id, attempts = mail.attempts, error = %error, "email delivery failed");
                        self.store
                            .mark_mail_failed(mail.id, &error_kind(&error), crate::now() + delay)
                            .await?;
                    }
                }
            }
        }
    }

    /// Hands one claimed message to the transport without marking it sent: the worker marks
    /// it afterwards. A crash in between leaves the claim to lapse and the message to be
    /// transmitted again, under the same file name and Message-ID (both derived from the
    /// message's id and key), so the retry replaces rather than repeats it.
    pub async fn transmit(&self, queued: &QueuedMail) -> anyhow::Result<()> {
        let key_digest = Sha256::digest(queued.idempotency_key.as_bytes());
        let key_hex: String = key_digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let to: Mailbox = queued
            .recipient
            .parse()
            .context("the recipient address cannot be parsed")?;
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(queued.subject.clone())
            .message_id(Some(format!("<{key_hex}@{domain}>")))
            .header(ContentType::TEXT_PLAIN);
        if let Some(url) = &queued.list_unsubscribe {
            // RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click` to the address.
            builder = builder
                .header(ListUnsubscribe(format!("<{url}>")))
                .header(ListUnsubscribePost);
        }
        let message = builder
            .body(readable_body(&queued.body_text))
            .context("building an email")?;
        match &*self.transport {
            Transport::Folder(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .context("creating the mail folder")?;
                let name = format!("{:010}-{key_hex}.eml", queued.id);
                let partial = dir.join(format!(".{name}.partial"));
                tokio::fs::write(&partial, message.formatted())
                    .await
                    .context("writing an email file")?;
                tokio::fs::rename(&partial, dir.join(name))
                    .await
                    .context("publishing an email file")?;
            }
            Transport::Smtp(smtp) => {
                smtp.send(message).await.context("sending over SMTP")?;
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` fires, delivering whenever woken or every poll interval.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.deliver_due().await {
                tracing::error!(error = %format!("{error:#}"), "the mail worker failed a round");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// `List-Unsubscribe: <https://…>` (RFC 2369).
#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(text.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

/// The text as it is (8bit), so that links stay whole for people and tools reading the raw
/// message. lettre would switch to quoted-printable past 76 characters a line; the standard
/// allows 998, which our messages never approach, so only longer text gets lettre's choice.
fn readable_body(text: &str) -> Body {
    let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
    if text.lines().all(|line| line.len() <= 998) {
        Body::dangerous_pre_encoded(text.into_bytes(), ContentTransferEncoding::EightBit)
    } else {
        Body::new(text)
    }
}

/// The error's outermost description, without any address or content.
fn error_kind(error: &anyhow::Error) -> String {
    error.to_string()
}
