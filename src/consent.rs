//! Consent on the server (promises C1–C4): the per-request consent context every page asks
//! before writing an optional tag, recording choices as immutable evidence, GPC recorded once
//! per subject, the stricter merge at sign-in, written opt-outs and receipts.
//! The decisions are `covenant_core::consent`'s; this module only gathers their inputs from the
//! store and writes their evidence back. It knows no HTTP and never logs a consent id.

use crate::accounts::random_token;
use crate::error::{Error, Result};
use crate::policy::{Policies, PolicyInForce, parse_stored};
use crate::store::{self, ConsentRecordRow, NewConsentRecord, Store};
use anyhow::Context;
use covenant_core::consent::{
    Choice, ConsentRecord, ConsentState, ConsentSubject, Decision, Method, Receipt, Signals,
    decide, needs_reconsent, stricter,
};
use covenant_core::diff::diff;
use covenant_core::policy::{CookieCategory, Policy};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

mod cache;
pub use cache::{ConsentId, SYNC_INTERVAL, WRITE_WINDOW};
use cache::{RecordCache, Standing, SubjectKey};

/// The first sentence of the banner and of the Cookie Settings page; part of the hashed notice.
pub const COOKIE_NOTICE_INTRO: &str = "This forum needs one cookie to work. Anything optional \
    stays off until you choose, and you can change your mind at any time on the Cookie Settings \
    page.";

/// What the Your Privacy Choices page says; part of its hashed notice.
pub const CHOICES_NOTICE: &str = "You can opt out of the sale or sharing of your personal \
    information and of targeted advertising. A Global Privacy Control signal from your browser \
    does the same, and anyone known to be under 16 is always opted out.";

/// The statement a GPC signal is recorded under (no text is shown: the browser spoke).
pub const GPC_NOTICE: &str = "A request with the Global Privacy Control signal (Sec-GPC: 1) \
    is an opt-out of sale, sharing and targeted advertising.";

/// Anyone who may still be 15 in the current year, knowing only the birth year, counts as
/// under 16: selling or sharing a minor's data by mistake is the worse error.
const ADULT_AGE_FOR_ADVERTISING: i64 = 16;

/// The policy version and the hash of the exact text a choice was made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeStamp {
    pub policy_version: String,
    pub text_hash: String,
}

impl NoticeStamp {
    pub fn new(policy: &Policy, text: &str) -> Self {
        Self {
            policy_version: policy.version().to_string(),
            text_hash: sha256_hex(text),
        }
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One cookie category as the banner and the settings page show it.
#[derive(Debug, Clone)]
pub struct NoticeGroup {
    pub category: CookieCategory,
    pub name: String,
    pub description: String,
    pub optional: bool,
}

/// The cookie notice: the exact text the banner and the Cookie Settings page show, from the
/// policy's cookie groups, with its stamp.
#[derive(Debug, Clone)]
pub struct CookieNotice {
    pub intro: &'static str,
    pub groups: Vec<NoticeGroup>,
    pub stamp: NoticeStamp,
}

impl CookieNotice {
    pub fn of(policy: &Policy) -> Self {
        let groups: Vec<NoticeGroup> = policy
            .cookies()
            .iter()
            .map(|group| NoticeGroup {
                category: group.category,
                name: group.name.clone(),
                description: group.description.clone(),
                optional: group.optional,
            })
            .collect();
        let mut text = COOKIE_NOTICE_INTRO.to_string();
        for group in &groups {
            text.push('\n');
            text.push_str(&group.name);
            text.push_str(": ");
            text.push_str(&group.description);
        }
        Self {
            intro: COOKIE_NOTICE_INTRO,
            stamp: NoticeStamp::new(policy, &text),
            groups,
        }
    }

    pub fn optional_categories(&self) -> impl Iterator<Item = CookieCategory> + '_ {
        self.groups
            .iter()
            .filter(|group| group.optional)
            .map(|group| group.category)
    }
}

/// A written opt-out request, by the subject line the law names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenOptOut {
    /// California (CCPA/CPRA): opt-out of sale and sharing.
    California,
    /// Nevada (NRS 603A): opt-out of sale.
    NevadaSale,
}

impl WrittenOptOut {
    pub fn subject_line(self) -> &'static str {
        match self {
            WrittenOptOut::California => "California Opt-Out",
            WrittenOptOut::NevadaSale => "Nevada Sale Opt-Out",
        }
    }

    /// Accepts the subject line as written, ignoring case and surrounding space.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        [WrittenOptOut::California, WrittenOptOut::NevadaSale]
            .into_iter()
            .find(|kind| kind.subject_line().eq_ignore_ascii_case(text))
    }
}

/// What the server knows about one request's consent: computed once per request, then asked
/// by every template and handler. Optional tags are written only when it says so.
#[derive(Clone, Default)]
pub struct ConsentContext {
    state: ConsentState,
    signals: Signals,
    device: Option<ConsentId>,
    account: Option<i64>,
    /// Whether the person (not only their browser's GPC signal) has made any choice.
    chosen: bool,
    /// Optional categories whose grant a material policy change made lapse, and which the
    /// banner asks about again, with the names the policy in force gives them.
    asked_again: Vec<(CookieCategory, String)>,
}

impl std::fmt::Debug for ConsentContext {
    // The consent id is an identifier: it stays out of any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentContext")
            .field("state", &self.state)
            .field("signals", &self.signals)
            .field("has_device", &self.device.is_some())
            .field("account", &self.account)
            .field("chosen", &self.chosen)
            .field("asked_again", &self.asked_again)
            .finish()
    }
}

impl ConsentContext {
    /// The decision for one category, for this request.
    pub fn decide(&self, category: CookieCategory) -> Decision {
        decide(&self.state, category, self.signals)
    }

    pub fn allows(&self, category: CookieCategory) -> bool {
        self.decide(category).allowed
    }

    /// The banner shows until the person has chosen something, and again when a policy
    /// change asks again for choices they made.
    pub fn show_banner(&self) -> bool {
        !self.chosen || !self.asked_again.is_empty()
    }

    /// The categories the banner asks about again after a policy change (empty otherwise).
    pub fn asked_again(&self) -> impl Iterator<Item = CookieCategory> + '_ {
        self.asked_again.iter().map(|(category, _)| *category)
    }

    /// Whether the banner shows again because a policy change asks again for some choices.
    pub fn asks_again(&self) -> bool {
        !self.asked_again.is_empty()
    }

    /// The names of the categories asked about again, for the banner's sentence.
    pub fn asked_again_names(&self) -> String {
        let names: Vec<&str> = self.asked_again.iter().map(|(_, n)| n.as_str()).collect();
        names.join(", ")
    }

    /// Whether the analytics tag may be written into this page.
    pub fn analytics_tag(&self) -> bool {
        analytics_allowed(self)
    }

    /// Whether the advertising tag may be written into this page.
    pub fn advertising_tag(&self) -> bool {
        self.allows(CookieCategory::Advertising)
    }

    /// The request carries `Sec-GPC: 1`.
    pub fn gpc(&self) -> bool {
        self.signals.gpc
    }

    pub fn known_minor_under_16(&self) -> bool {
        self.signals.known_minor_under_16
    }

    pub fn device(&self) -> Option<&str> {
        self.device.as_ref().map(ConsentId::as_str)
    }

    pub fn account(&self) -> Option<i64> {
        self.account
    }

    pub fn state(&self) -> &ConsentState {
        &self.state
    }

    /// Every subject a choice made in this request is recorded for.
    pub fn subjects(&self) -> Vec<ConsentSubject> {
        let mut subjects = Vec::new();
        if let Some(device) = &self.device {
            subjects.push(ConsentSubject::Device(device.as_str().to_string()));
        }
        if let Some(account) = self.account {
            subjects.push(ConsentSubject::Account(account));
        }
        subjects
    }
}

/// The analytics gate: the visitor-statistics collector is fed only when this says yes.
pub fn analytics_allowed(context: &ConsentContext) -> bool {
    context.allows(CookieCategory::Analytics)
}

/// Who a request speaks for, as the web edge found it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSubjects {
    /// The consent id of the device cookie, if the browser has a well-formed one.
    pub device: Option<ConsentId>,
    pub account: Option<i64>,
    pub gpc: bool,
}

/// Whether `text` can be a consent id we issued: 43 characters of URL-safe base64.
pub fn is_consent_id(text: &str) -> bool {
    ConsentId::parse(text).is_some()
}

/// A fresh random consent id for a device (256 bits).
pub fn new_consent_id() -> String {
    random_token()
}

fn parse_row(row: &ConsentRecordRow) -> anyhow::Result<ConsentRecord> {
    Ok(ConsentRecord {
        id: row.receipt_id.clone(),
        subject: ConsentSubject::parse(&row.subject)?,
        category: CookieCategory::parse(&row.category)?,
        choice: Choice::parse(&row.choice)?,
        method: Method::parse(&row.method)?,
        policy_version: row.policy_version.clone(),
        text_hash: row.text_hash.clone(),
        recorded_at: OffsetDateTime::from_unix_timestamp(row.recorded_at)
            .context("a consent record's time is out of range")?,
    })
}

fn parse_rows(rows: &[ConsentRecordRow]) -> Result<Vec<ConsentRecord>> {
    rows.iter()
        .map(|row| parse_row(row).with_context(|| format!("consent record {}", row.id)))
        .collect::<anyhow::Result<_>>()
        .map_err(Error::Internal)
}

/// The latest record per category, by the same rule the core folds with.
fn latest_by_category(records: &[ConsentRecord]) -> [Option<&ConsentRecord>; 4] {
    let mut latest: [Option<&ConsentRecord>; 4] = [None; 4];
    for record in records {
        let slot = &mut latest[category_slot(record.category)];
        if slot.is_none_or(|held| held.recorded_at <= record.recorded_at) {
            *slot = Some(record);
        }
    }
    latest
}

/// The context of a request from its merged standing choices, the categories that lapsed,
/// the policy in force (when it was read: only then can anything have lapsed) and the signals.
fn assemble(
    state: ConsentState,
    lapsed: AskedAgain,
    in_force: Option<&PolicyInForce>,
    signals: Signals,
    device: Option<ConsentId>,
    account: Option<i64>,
) -> ConsentContext {
    // The banner asks again for what lapsed and was not chosen anew on the other side,
    // among the optional groups the policy in force still declares.
    let asked_again = match in_force {
        Some(in_force) => in_force
            .policy
            .cookies()
            .iter()
            .filter(|group| group.optional && lapsed[category_slot(group.category)])
            .filter(|group| state.standing(group.category).is_none())
            .map(|group| (group.category, group.name.clone()))
            .collect(),
        None => vec![],
    };
    let chosen = CookieCategory::ALL.iter().any(|category| {
        state
            .standing(*category)
            .is_some_and(|standing| standing.method != Method::Gpc)
    });
    ConsentContext {
        state,
        signals,
        device,
        account,
        chosen,
        asked_again,
    }
}

/// The latest record of each category the subject has granted: those a policy change may
/// have made lapse.
fn grants_to_check<'a>(
    records: &'a [ConsentRecord],
    state: &ConsentState,
) -> impl Iterator<Item = &'a ConsentRecord> {
    let granted: [bool; 4] = std::array::from_fn(|slot| {
        state.choice(CookieCategory::ALL[slot]) == Some(Choice::Granted)
    });
    latest_by_category(records)
        .into_iter()
        .enumerate()
        .filter_map(move |(slot, record)| record.filter(|_| granted[slot]))
}

/// Lets lapse every standing grant in `state` that a policy change since its record asks
/// again for, by `verdict` of the version it was recorded under (`None`: not known, and
/// nothing changes). Returns the categories that lapsed.
fn lapse_grants(
    records: &[ConsentRecord],
    state: &mut ConsentState,
    verdict: impl Fn(&str) -> Option<AskedAgain>,
) -> Option<AskedAgain> {
    let mut asked_for = [[false; 4]; 4];
    for record in grants_to_check(records, state) {
        let slot = category_slot(record.category);
        asked_for[slot] = verdict(&record.policy_version)?;
    }
    let mut lapsed = [false; 4];
    for category in CookieCategory::ALL {
        let slot = category_slot(*category);
        if asked_for[slot][slot] && state.ask_again(*category) {
            lapsed[slot] = true;
        }
    }
    Some(lapsed)
}

fn has_a_grant(state: &ConsentState) -> bool {
    CookieCategory::ALL
        .iter()
        .any(|category| state.choice(*category) == Some(Choice::Granted))
}

fn category_slot(category: CookieCategory) -> usize {
    CookieCategory::ALL
        .iter()
        .position(|c| *c == category)
        .expect("every category is in ALL")
}

/// One flag per cookie category (in `CookieCategory::ALL` order): which grants a policy change
/// asks again for.
type AskedAgain = [bool; 4];

/// The verdicts of `needs_reconsent` for the policy in force, by the label a choice was recorded
/// under. Versions only move forward, so when another comes into force the old verdicts are
/// never asked for again and are dropped.
#[derive(Default)]
struct Verdicts {
    in_force: String,
    since: HashMap<String, AskedAgain>,
}

/// Where the policy a choice was recorded under stands against the policy in force.
enum RecordedUnder {
    /// An earlier policy: its difference from the one in force decides.
    Earlier(Box<Policy>),
    /// The same or a later version (not yet in force): nothing to ask again.
    NotEarlier,
    /// A label neither published nor the starting policy's.
    Unknown,
}

/// The consent services, over the store.
#[derive(Clone)]
pub struct Consent {
    store: Store,
    /// Published versions never change, so neither does the verdict for a pair of them: the
    /// diff is computed once per pair and process, never per request.
    verdicts: Arc<RwLock<Verdicts>>,
    /// Standing records of recent subjects, shared by every clone (see `cache`).
    cache: Arc<RecordCache>,
}

impl Consent {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            verdicts: Arc::default(),
            cache: Arc::default(),
        }
    }

    /// One round of looking for consent records and policy versions written by other processes
    /// (other nodes, the command line); the server runs it every [`SYNC_INTERVAL`].
    pub async fn sync(&self) -> Result<()> {
        Ok(self.cache.sync(&self.store).await?)
    }

    /// Forgets every subject's standing records; the next request of each reads them again.
    pub fn forget_cached(&self) {
        self.cache.clear();
    }

    /// How many subjects' standing records are held in memory.
    pub fn cached_subjects(&self) -> usize {
        self.cache.held()
    }

    /// Which categories the changes from the policy `recorded_under` to the one in force ask
    /// again for; from the cache after the first request that asks about this pair.
    async fn asked_again_since(
        &self,
        recorded_under: &str,
        in_force: &PolicyInForce,
        policies: &Policies,
    ) -> Result<AskedAgain> {
        if let Some(verdict) = self.asked_again_in_memory(recorded_under, in_force) {
            return Ok(verdict);
        }
        let current = in_force.policy.version();
        let mut verdict = [false; 4];
        match self
            .recorded_under(recorded_under, in_force, policies)
            .await?
        {
            RecordedUnder::Earlier(old) => {
                let change = diff(&old, &in_force.policy);
                for category in CookieCategory::ALL {
                    verdict[category_slot(*category)] = needs_reconsent(&change, *category);
                }
            }
            RecordedUnder::NotEarlier => {}
            RecordedUnder::Unknown => {
                // Nobody can say what such a grant covered, so it covers nothing now.
                tracing::warn!(
                    policy_version = recorded_under,
                    "consent recorded under an unknown policy version; asking again"
                );
                for category in CookieCategory::ALL {
                    verdict[category_slot(*category)] = category.is_optional();
                }
            }
        }
        let mut verdicts = self
            .verdicts
            .write()
            .expect("the verdict lock is never poisoned");
        if verdicts.in_force != current {
            verdicts.in_force = current.to_string();
            verdicts.since.clear();
        }
        verdicts.since.insert(recorded_under.to_string(), verdict);
        Ok(verdict)
    }

    /// [`Self::asked_again_since`] when it needs no reading: the same version, or a pair
    /// already compared.
    fn asked_again_in_memory(
        &self,
        recorded_under: &str,
        in_force: &PolicyInForce,
    ) -> Option<AskedAgain> {
        let current = in_force.policy.version();
        if recorded_under == current {
            return Some([false; 4]);
        }
        let verdicts = self
            .verdicts
            .read()
            .expect("the verdict lock is never poisoned");
        if verdicts.in_force == current {
            return verdicts.since.get(recorded_under).copied();
        }
        None
    }

    /// Finds the policy a label names: a published version, else the starting policy. A
    /// starting policy whose label was later published is taken to be that version.
    async fn recorded_under(
        &self,
        label: &str,
        in_force: &PolicyInForce,
        policies: &Policies,
    ) -> Result<RecordedUnder> {
        match self.store.policy_version_by_label(label).await? {
            Some(row) => {
                // Versions are published in order of their effective dates, so a larger id is
                // a later version.
                let earlier = in_force.version.as_ref().is_some_and(|v| row.id < v.id);
                if !earlier {
                    return Ok(RecordedUnder::NotEarlier);
                }
                Ok(RecordedUnder::Earlier(Box::new(
                    policies.with_operator(parse_stored(&row)?),
                )))
            }
            None if label == policies.starting().version() => Ok(RecordedUnder::Earlier(Box::new(
                policies.starting().clone(),
            ))),
            None => Ok(RecordedUnder::Unknown),
        }
    }

    /// Lets lapse every standing grant in `state` that a policy change since its record asks
    /// again for (C1: nothing optional runs on a grant that did not cover what the policy now
    /// says). Returns the categories that lapsed.
    async fn lapse_stale_grants(
        &self,
        records: &[ConsentRecord],
        state: &mut ConsentState,
        in_force: &PolicyInForce,
        policies: &Policies,
    ) -> Result<AskedAgain> {
        // The verdicts the grants need are read first; the lapsing itself reads nothing.
        let mut verdicts: Vec<(&str, AskedAgain)> = Vec::new();
        for record in grants_to_check(records, state) {
            let version = record.policy_version.as_str();
            if !verdicts.iter().any(|(known, _)| *known == version) {
                let asked = self.asked_again_since(version, in_force, policies).await?;
                verdicts.push((version, asked));
            }
        }
        let verdict = |version: &str| {
            verdicts
                .iter()
                .find(|(known, _)| *known == version)
                .map(|(_, asked)| *asked)
        };
        Ok(lapse_grants(records, state, verdict).unwrap_or([false; 4]))
    }

    /// The consent context of one request: the subject's standing choices (at sign-in merged,
    /// afterwards the stricter of device and account), GPC and age. A GPC signal is recorded
    /// the first time a subject sends it, never again.
    pub async fn context(
        &self,
        request: RequestSubjects,
        policies: &Policies,
        now: i64,
    ) -> Result<ConsentContext> {
        let device = request.device;
        // The version in force comes with the records, so a page costs no extra round trip.
        let mut known_in_force = None;
        let mut device_records = match device {
            Some(id) => {
                let (records, in_force) = self
                    .records_and_policy_in_force(SubjectKey::Device(id))
                    .await?;
                known_in_force = known_in_force.or(in_force);
                records
            }
            None => Arc::default(),
        };
        let (mut account_records, birth_year, limits) = match request.account {
            Some(user_id) => {
                let (records, in_force) = self
                    .records_and_policy_in_force(SubjectKey::Account(user_id))
                    .await?;
                known_in_force = known_in_force.or(in_force);
                (
                    records,
                    self.store.birth_year_of(user_id).await?,
                    crate::purpose::limits_of(&self.store, user_id).await?,
                )
            }
            None => (Arc::default(), None, crate::purpose::Limits::default()),
        };
        let policy_in_force = async || -> Result<Arc<PolicyInForce>> {
            Ok(match known_in_force {
                Some(id) => policies.at(id).await?,
                None => policies.current().await?,
            })
        };
        let needs_gpc_record = |records: &[ConsentRecord]| {
            request.gpc && !records.iter().any(|record| record.method == Method::Gpc)
        };
        // The policy in force is read only when a GPC record may be written or a grant may
        // have lapsed: a visitor who chose nothing, or refused, costs no query for it.
        let mut in_force = None;
        if (device.is_some() && needs_gpc_record(&device_records))
            || (request.account.is_some() && needs_gpc_record(&account_records))
        {
            let policy = &in_force.insert(policy_in_force().await?).policy;
            if let Some(id) = device {
                let subject = ConsentSubject::Device(id.as_str().to_string());
                if let Some(record) = self
                    .record_gpc_once(&subject, &device_records, policy, now)
                    .await?
                {
                    Arc::make_mut(&mut device_records).push(record);
                }
            }
            if let Some(user_id) = request.account {
                let subject = ConsentSubject::Account(user_id);
                if let Some(record) = self
                    .record_gpc_once(&subject, &account_records, policy, now)
                    .await?
                {
                    Arc::make_mut(&mut account_records).push(record);
                }
            }
        }
        let mut device_state = ConsentState::from_records(device_records.iter());
        let mut account_state = ConsentState::from_records(account_records.iter());
        let mut lapsed = [false; 4];
        if has_a_grant(&device_state) || has_a_grant(&account_state) {
            let in_force = match &in_force {
                Some(in_force) => in_force,
                None => in_force.insert(policy_in_force().await?),
            };
            // Each side lapses by the version its own grant was recorded under, before the
            // merge: an account's grant made under the policy in force still counts.
            let on_device = self
                .lapse_stale_grants(&device_records, &mut device_state, in_force, policies)
                .await?;
            let on_account = self
                .lapse_stale_grants(&account_records, &mut account_state, in_force, policies)
                .await?;
            for (slot, lapsed) in lapsed.iter_mut().enumerate() {
                *lapsed = on_device[slot] || on_account[slot];
            }
        }
        let state = if request.account.is_some() {
            stricter(&device_state, &account_state)
        } else {
            device_state
        };
        let year = OffsetDateTime::from_unix_timestamp(now)
            .map(|t| i64::from(t.year()))
            .unwrap_or(i64::MAX);
        let signals = Signals {
            gpc: request.gpc,
            known_minor_under_16: birth_year
                .is_some_and(|born| year - born <= ADULT_AGE_FOR_ADVERTISING),
            // The purpose gate's restriction (R9): the core turns analytics off for it.
            restricted: limits.restricted,
            objected: false,
        };
        Ok(assemble(
            state,
            lapsed,
            in_force.as_deref(),
            signals,
            device,
            request.account,
        ))
    }

    /// [`Self::context`] for a request whose every input is already in memory: a visitor who
    /// is not signed in, whose device's records this node holds, with no GPC signal left to
    /// record and any grant's policy comparison known. `None` when something must be read or
    /// written: the caller then takes the full path. Both give the same context.
    pub fn context_in_memory(
        &self,
        request: RequestSubjects,
        policies: &Policies,
    ) -> Option<Arc<ConsentContext>> {
        if request.account.is_some() {
            return None;
        }
        // One context per answer to GPC: without the signal, and with it.
        let slot = usize::from(request.gpc);
        let signals = Signals {
            gpc: request.gpc,
            ..Signals::default()
        };
        let Some(id) = request.device else {
            // One per thread, so that pages on different cores share no reference count.
            thread_local! {
                static NO_CHOICE: [std::cell::OnceCell<Arc<ConsentContext>>; 2] =
                    Default::default();
            }
            return Some(NO_CHOICE.with(|contexts| {
                contexts[slot]
                    .get_or_init(|| {
                        Arc::new(assemble(
                            ConsentState::default(),
                            [false; 4],
                            None,
                            signals,
                            None,
                            None,
                        ))
                    })
                    .clone()
            }));
        };
        let key = SubjectKey::Device(id);
        if let Some(context) = self.cache.visitor_context(&key, slot) {
            return Some(context);
        }
        let day = crate::policy::today_number();
        let standing = self.cache.get(&key, day).ok()?;
        let records = standing.records.as_slice();
        if request.gpc && !records.iter().any(|record| record.method == Method::Gpc) {
            return None;
        }
        let mut state = ConsentState::from_records(records.iter());
        let mut lapsed = [false; 4];
        let mut in_force = None;
        if has_a_grant(&state) {
            // The version in force is known with the records whenever there is one.
            let held = in_force.insert(policies.in_memory(standing.in_force?)?);
            lapsed = lapse_grants(records, &mut state, |version| {
                self.asked_again_in_memory(version, held)
            })?;
        }
        let context = Arc::new(assemble(
            state,
            lapsed,
            in_force.as_deref(),
            signals,
            Some(id),
            None,
        ));
        // Worked out from what the entry holds and verdicts that never change for it: the
        // next page of this visitor takes it as it is.
        Some(
            standing.visitor_contexts[slot]
                .get_or_init(|| context)
                .clone(),
        )
    }

    /// A subject's records and the id of the policy version in force, in one query; the
    /// version is known only when there is a record.
    async fn records_and_policy_in_force(
        &self,
        subject: SubjectKey,
    ) -> Result<(Arc<Vec<ConsentRecord>>, Option<Option<i64>>)> {
        let day = crate::policy::today_number();
        let ticket = match self.cache.get(&subject, day) {
            Ok(standing) => return Ok((standing.records, standing.in_force)),
            Err(ticket) => ticket,
        };
        let (rows, in_force) = self
            .store
            .consent_records_and_policy_in_force(
                &subject.subject_text(),
                &crate::policy::day_text(day),
            )
            .await?;
        let standing = Standing::new(parse_rows(&rows)?, in_force);
        self.cache.keep(ticket, subject, day, &standing);
        Ok((standing.records, standing.in_force))
    }

    pub async fn records(&self, subject: &ConsentSubject) -> Result<Vec<ConsentRecord>> {
        let rows = self.store.consent_records_of(&subject.to_string()).await?;
        parse_rows(&rows)
    }

    /// Records the GPC opt-out of `subject` unless it was recorded before (by this or another
    /// node): the records already read answer most requests without a write.
    async fn record_gpc_once(
        &self,
        subject: &ConsentSubject,
        known: &[ConsentRecord],
        policy: &Policy,
        now: i64,
    ) -> Result<Option<ConsentRecord>> {
        if known.iter().any(|record| record.method == Method::Gpc) {
            return Ok(None);
        }
        let key = subject.to_string();
        if self.store.gpc_recorded(&key).await? {
            return Ok(None);
        }
        let stamp = NoticeStamp::new(policy, GPC_NOTICE);
        let mut tx = self.store.begin().await?;
        let (record, id) = insert_record(
            &mut tx,
            subject,
            CookieCategory::Advertising,
            Choice::Denied,
            Method::Gpc,
            &stamp,
            now,
        )
        .await?;
        if !store::claim_gpc_marker(&mut tx, &key, id, now).await? {
            // Another request recorded it first; its record stands alone.
            tx.rollback()
                .await
                .context("abandoning a second GPC record")?;
            return Ok(None);
        }
        tx.commit().await.context("recording a GPC signal")?;
        self.cache.evict([key.as_str()]);
        tracing::info!(subject_kind = subject_kind(subject), "GPC signal recorded");
        Ok(Some(record))
    }

    /// Records one choice per category for every subject, in one transaction; every record is
    /// new evidence and nothing earlier changes. Necessary cookies take no choice.
    pub async fn record_choices(
        &self,
        subjects: &[ConsentSubject],
        choices: &[(CookieCategory, Choice)],
        method: Method,
        stamp: &NoticeStamp,
        now: i64,
    ) -> Result<Vec<ConsentRecord>> {
        if let Some((category, _)) = choices.iter().find(|(c, _)| !c.is_optional()) {
            return Err(Error::BadRequest(format!(
                "the {category} category is always on and takes no choice"
            )));
        }
        if subjects.is_empty() || choices.is_empty() {
            return Ok(vec![]);
        }
        let mut tx = self.store.begin().await?;
        let mut records = Vec::new();
        for subject in subjects {
            for (category, choice) in choices {
                let (record, _) =
                    insert_record(&mut tx, subject, *category, *choice, method, stamp, now).await?;
                records.push(record);
            }
        }
        tx.commit().await.context("recording consent choices")?;
        let keys: Vec<String> = subjects.iter().map(ToString::to_string).collect();
        self.cache.evict(keys.iter().map(String::as_str));
        tracing::info!(
            n_records = records.len(),
            method = method.as_str(),
            "consent choices recorded"
        );
        Ok(records)
    }

    /// At sign-in the stricter of the device's and the account's choices wins, per category;
    /// whichever side differs gets a record (method `account_sync`) carrying the winning
    /// record's policy version and text hash.
    pub async fn merge_at_sign_in(
        &self,
        device: Option<&str>,
        user_id: i64,
        now: i64,
    ) -> Result<()> {
        let device = device.filter(|id| is_consent_id(id)).map(str::to_string);
        let account_subject = ConsentSubject::Account(user_id);
        let account_records = self.records(&account_subject).await?;
        let device_subject = device.map(ConsentSubject::Device);
        let device_records = match &device_subject {
            Some(subject) => self.records(subject).await?,
            None => vec![],
        };
        let device_state = ConsentState::from_records(device_records.iter());
        let account_state = ConsentState::from_records(account_records.iter());
        let merged = stricter(&device_state, &account_state);
        let device_latest = latest_by_category(&device_records);
        let account_latest = latest_by_category(&account_records);
        let mut writes: Vec<(ConsentSubject, CookieCategory, Choice, NoticeStamp)> = vec![];
        for category in CookieCategory::ALL
            .iter()
            .copied()
            .filter(|c| c.is_optional())
        {
            let Some(winner) = merged.standing(category) else {
                continue;
            };
            let slot = category_slot(category);
            let from_device = device_state.standing(category) == Some(winner);
            let source = if from_device {
                device_latest[slot]
            } else {
                account_latest[slot]
            };
            let Some(source) = source else { continue };
            let stamp = NoticeStamp {
                policy_version: source.policy_version.clone(),
                text_hash: source.text_hash.clone(),
            };
            if account_state.choice(category) != Some(winner.choice) {
                writes.push((
                    account_subject.clone(),
                    category,
                    winner.choice,
                    stamp.clone(),
                ));
            }
            if let Some(subject) = &device_subject
                && device_state.choice(category) != Some(winner.choice)
            {
                writes.push((subject.clone(), category, winner.choice, stamp));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        for (subject, category, choice, stamp) in &writes {
            insert_record(
                &mut tx,
                subject,
                *category,
                *choice,
                Method::AccountSync,
                stamp,
                now,
            )
            .await?;
        }
        tx.commit().await.context("merging consent at sign-in")?;
        let keys: Vec<String> = writes.iter().map(|(s, ..)| s.to_string()).collect();
        self.cache.evict(keys.iter().map(String::as_str));
        tracing::info!(
            user_id,
            n_records = writes.len(),
            "consent merged at sign-in"
        );
        Ok(())
    }

    /// Applies a written "California Opt-Out" or "Nevada Sale Opt-Out" request to an account.
    pub async fn written_opt_out(
        &self,
        user_id: i64,
        kind: WrittenOptOut,
        policy: &Policy,
        now: i64,
    ) -> Result<ConsentRecord> {
        if self.store.birth_year_of(user_id).await?.is_none() {
            return Err(Error::NotFound("account"));
        }
        let stamp = NoticeStamp::new(policy, kind.subject_line());
        let mut records = self
            .record_choices(
                &[ConsentSubject::Account(user_id)],
                &[(CookieCategory::Advertising, Choice::Denied)],
                Method::WrittenRequest,
                &stamp,
                now,
            )
            .await?;
        Ok(records.remove(0))
    }

    /// Every record of an account as ISO/IEC TS 27560-style receipts, oldest first.
    pub async fn receipts(&self, user_id: i64, policy: &Policy) -> Result<Vec<Receipt>> {
        let records = self.records(&ConsentSubject::Account(user_id)).await?;
        Ok(records
            .iter()
            .map(|record| Receipt::from_record(record, policy.controller()))
            .collect())
    }

    /// The standing choices of one subject as recorded, without request signals.
    pub async fn state_of(&self, subject: &ConsentSubject) -> Result<ConsentState> {
        Ok(ConsentState::from_records(&self.records(subject).await?))
    }

    /// The standing choices of one subject that count now: without request signals, and
    /// without the grants a policy change since asks again for.
    pub async fn effective_state_of(
        &self,
        subject: &ConsentSubject,
        policies: &Policies,
    ) -> Result<ConsentState> {
        let records = self.records(subject).await?;
        let mut state = ConsentState::from_records(&records);
        if has_a_grant(&state) {
            let in_force = policies.current().await?;
            self.lapse_stale_grants(&records, &mut state, &in_force, policies)
                .await?;
        }
        Ok(state)
    }

    /// Whether an account is known to be under 16 (for decisions asked through the API).
    pub async fn known_minor(&self, user_id: i64, now: i64) -> Result<bool> {
        let year = OffsetDateTime::from_unix_timestamp(now)
            .map(|t| i64::from(t.year()))
            .unwrap_or(i64::MAX);
        Ok(self
            .store
            .birth_year_of(user_id)
            .await?
            .is_some_and(|born| year - born <= ADULT_AGE_FOR_ADVERTISING))
    }
}

fn subject_kind(subject: &ConsentSubject) -> &'static str {
    match subject {
        ConsentSubject::Device(_) => "device",
        ConsentSubject::Account(_) => "account",
    }
}

/// Records one choice in the caller's transaction: a request's objection or withdrawal of
/// consent, committed with the rest of what the request stops.
pub async fn record_in(
    tx: &mut store::Tx,
    subject: &ConsentSubject,
    category: CookieCategory,
    choice: Choice,
    method: Method,
    stamp: &NoticeStamp,
    now: i64,
) -> Result<ConsentRecord> {
    Ok(
        insert_record(tx, subject, category, choice, method, stamp, now)
            .await?
            .0,
    )
}

async fn insert_record(
    tx: &mut store::Tx,
    subject: &ConsentSubject,
    category: CookieCategory,
    choice: Choice,
    method: Method,
    stamp: &NoticeStamp,
    now: i64,
) -> Result<(ConsentRecord, i64)> {
    let receipt_id = random_token();
    let subject_text = subject.to_string();
    cache::mark_writing(&subject_text);
    let id = store::insert_consent_record(
        tx,
        &NewConsentRecord {
            receipt_id: &receipt_id,
            subject: &subject_text,
            category: category.as_str(),
            choice: choice.as_str(),
            method: method.as_str(),
            policy_version: &stamp.policy_version,
            text_hash: &stamp.text_hash,
            recorded_at: now,
        },
    )
    .await?;
    let record = ConsentRecord {
        id: receipt_id,
        subject: subject.clone(),
        category,
        choice,
        method,
        policy_version: stamp.policy_version.clone(),
        text_hash: stamp.text_hash.clone(),
        recorded_at: OffsetDateTime::from_unix_timestamp(now)
            .context("the clock is out of range")?,
    };
    Ok((record, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(state: ConsentState, signals: Signals) -> ConsentContext {
        ConsentContext {
            state,
            signals,
            device: None,
            account: None,
            chosen: true,
            asked_again: vec![],
        }
    }

    fn record(category: CookieCategory, choice: Choice, at: i64) -> ConsentRecord {
        ConsentRecord {
            id: format!("r{at}"),
            subject: ConsentSubject::Device("d".into()),
            category,
            choice,
            method: Method::SettingsPage,
            policy_version: "1".into(),
            text_hash: "h".into(),
            recorded_at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
        }
    }

    /// Proves: C1
    #[test]
    fn analytics_is_off_without_a_choice() {
        assert!(!analytics_allowed(&ConsentContext::default()));
        assert!(ConsentContext::default().show_banner());
    }

    /// Proves: C1
    #[test]
    fn analytics_follows_the_latest_choice() {
        let granted =
            ConsentState::from_records(&[record(CookieCategory::Analytics, Choice::Granted, 10)]);
        assert!(analytics_allowed(&context(granted, Signals::default())));
        let withdrawn = ConsentState::from_records(&[
            record(CookieCategory::Analytics, Choice::Granted, 10),
            record(CookieCategory::Analytics, Choice::Denied, 20),
        ]);
        assert!(!analytics_allowed(&context(withdrawn, Signals::default())));
    }

    /// Proves: C1
    #[test]
    fn analytics_stops_while_processing_is_restricted() {
        let granted =
            ConsentState::from_records(&[record(CookieCategory::Analytics, Choice::Granted, 10)]);
        let signals = Signals {
            restricted: true,
            ..Signals::default()
        };
        assert!(!analytics_allowed(&context(granted, signals)));
    }

    /// Proves: C2
    #[test]
    fn gpc_keeps_advertising_off_but_not_analytics() {
        let state = ConsentState::from_records(&[
            record(CookieCategory::Analytics, Choice::Granted, 10),
            record(CookieCategory::Advertising, Choice::Granted, 10),
        ]);
        let signals = Signals {
            gpc: true,
            ..Signals::default()
        };
        let context = context(state, signals);
        assert!(analytics_allowed(&context));
        assert!(!context.advertising_tag());
    }

    #[test]
    fn consent_ids_are_only_what_we_issue() {
        assert!(is_consent_id(&new_consent_id()));
        assert!(!is_consent_id("short"));
        assert!(!is_consent_id(&"a;".repeat(22)[..43]));
    }

    #[test]
    fn written_opt_out_subjects_are_read_as_written() {
        assert_eq!(
            WrittenOptOut::parse(" california opt-out "),
            Some(WrittenOptOut::California)
        );
        assert_eq!(
            WrittenOptOut::parse("Nevada Sale Opt-Out"),
            Some(WrittenOptOut::NevadaSale)
        );
        assert_eq!(WrittenOptOut::parse("Opt-Out"), None);
    }

    #[test]
    fn the_notice_hash_changes_with_the_text_shown() {
        let policy = Policy::default_policy();
        let notice = CookieNotice::of(&policy);
        assert_eq!(notice.stamp.policy_version, policy.version());
        assert_eq!(notice.stamp.text_hash.len(), 64);
        assert_ne!(
            notice.stamp.text_hash,
            NoticeStamp::new(&policy, CHOICES_NOTICE).text_hash
        );
        assert!(notice.optional_categories().all(|c| c.is_optional()));
    }
}
