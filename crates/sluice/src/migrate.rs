//! `sluice migrate`: what moving from ingress-nginx to Sluice changes, Ingress by Ingress.
//!
//! Every annotation and ConfigMap key has a definite fate in Sluice's catalogues
//! ([`catalog`], [`config_keys`]); the report reads them, and the diagnostics translation
//! gives for the values actually written, and sorts what it finds into:
//! - **exact**: served as ingress-nginx serves it;
//! - **differs**: served with a documented difference (the sentence is quoted);
//! - **accepted**: NGINX tuning with no effect a client can see, or a name ingress-nginx
//!   ignores too (removed, unknown);
//! - **ignored**: not supported: ingress-nginx applied it, Sluice does not;
//! - **refused**: not supported and protective (or a snippet outside the subset Sluice
//!   reads): the Ingress's routes answer 503.
//!
//! Each Ingress gets a verdict (moves as is, moves with differences, will answer 503), each
//! class the flags that take it over. The analysis ([`assess`]) is pure: a [`Snapshot`] in,
//! a [`Report`] out; reading a directory or a cluster and printing are around it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use serde::Serialize;
use sluice_model::{
    Diagnostic, Kind, NamespacedName, ObjectRef, Objects, Reason, Settings, Severity, Snapshot,
};
use sluice_translate::annotations::{self, catalog, catalog::Support};
use sluice_translate::class::LEGACY_CLASS_ANNOTATION;
use sluice_translate::config_keys::{self, KeySupport};

use crate::cli::{FailOn, MigrateArgs, OutputFormat};

/// What happens to one annotation or ConfigMap key when Sluice takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// Served as ingress-nginx serves it.
    Exact,
    /// NGINX tuning with no visible effect, or a name ingress-nginx ignores too.
    Accepted,
    /// Served, with a documented difference.
    Differs,
    /// Not supported: ingress-nginx applied it; Sluice ignores it.
    Ignored,
    /// Not supported and protective, or a refused snippet: the routes answer 503.
    Refused,
}

impl Fate {
    /// A word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Exact => "exact",
            Fate::Accepted => "accepted",
            Fate::Differs => "differs",
            Fate::Ignored => "ignored",
            Fate::Refused => "refused (503)",
        }
    }

    /// A shorter word, after a name.
    fn short(self) -> &'static str {
        if self == Fate::Refused { "503" } else { self.as_str() }
    }
}

/// What moving does to one Ingress, worst first in [`Ord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Some or all of its routes answer 503 under Sluice.
    #[serde(rename = "will-answer-503")]
    Answers503,
    /// Served, but something behaves otherwise: an annotation ignored or served differently.
    MovesWithDifferences,
    /// Served as ingress-nginx serves it.
    MovesAsIs,
}

impl Verdict {
    /// Words for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Answers503 => "will answer 503",
            Verdict::MovesWithDifferences => "moves with differences",
            Verdict::MovesAsIs => "moves as is",
        }
    }
}

/// One annotation of one Ingress, or one key of the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The annotation (without the prefix) or the key.
    pub name: String,
    /// What happens to it.
    pub fate: Fate,
    /// Why, in a sentence: the difference, the tuning note, what happens instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One Ingress.
#[derive(Clone, Debug, Serialize)]
pub struct IngressReport {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The file and line it was read from (manifests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its class (`spec.ingressClassName`, else the legacy annotation), `(none)` without one.
    pub class: String,
    /// What moving does to it.
    pub verdict: Verdict,
    /// Each of its annotations under the prefix.
    pub annotations: Vec<Finding>,
    /// Why its routes answer 503, when they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers_503: Option<String>,
    /// What else translation says about it (a missing Service, a path collision): the same
    /// under ingress-nginx unless it changed the verdict.
    pub notes: Vec<String>,
}

/// One annotation across every Ingress.
#[derive(Clone, Debug, Serialize)]
pub struct AnnotationTotal {
    /// The annotation, without the prefix.
    pub name: String,
    /// Its fate as written in most Ingresses (a value may make one Ingress's fate worse).
    pub fate: Fate,
    /// The catalogue's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Ingresses carrying it.
    pub ingresses: usize,
    /// Of those, the ones whose value made it refused (503) or not applied.
    pub not_applied: usize,
}

/// How many Ingresses get each verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Ingresses read.
    pub ingresses: usize,
    /// Served as ingress-nginx serves them.
    pub moves_as_is: usize,
    /// Served, with differences.
    pub moves_with_differences: usize,
    /// Routes answering 503.
    pub answers_503: usize,
}

/// The snippets and the firewall: what real Ingresses lean on most.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnippetTotals {
    /// Ingresses with a snippet annotation (`configuration-snippet`, `server-snippet`,
    /// `modsecurity-snippet`, `auth-snippet`, `stream-snippet`).
    pub ingresses: usize,
    /// Of those, the ones whose every snippet Sluice reads into policy.
    pub covered: usize,
    /// Ingresses with `configuration-snippet` or `server-snippet`, the NGINX directives
    /// Sluice reads a subset of.
    pub nginx: usize,
    /// Of those, the ones whose NGINX snippets Sluice reads whole.
    pub nginx_covered: usize,
    /// Whether the ConfigMap lets annotation snippets be read (`allow-snippet-annotations`
    /// and `annotations-risk-level: Critical`, ingress-nginx's gates, closed by default).
    pub gates_open: bool,
    /// Ingresses with `enable-modsecurity` or `modsecurity-snippet`: Sluice has no
    /// ModSecurity, so their firewall is off.
    pub modsecurity: usize,
}

/// One class of Ingresses and how Sluice takes it over.
#[derive(Clone, Debug, Serialize)]
pub struct ClassPlan {
    /// The class, `(none)` for Ingresses without one.
    pub class: String,
    /// Ingresses of the class.
    pub ingresses: usize,
    /// The IngressClass's controller (`k8s.io/ingress-nginx` assumed when the IngressClass
    /// was not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The flags of `sluice serve` that serve this class in place of ingress-nginx.
    pub take_over: String,
}

/// The ConfigMap.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigMapReport {
    /// `namespace/name` looked for.
    pub name: String,
    /// Whether it was found (without it, ingress-nginx's defaults apply to both).
    pub found: bool,
    /// Each key.
    pub keys: Vec<Finding>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was read.
    pub source: String,
    /// Verdict counts.
    pub totals: Totals,
    /// Snippets and ModSecurity.
    pub snippets: SnippetTotals,
    /// The ConfigMap.
    pub configmap: ConfigMapReport,
    /// The flags per class.
    pub classes: Vec<ClassPlan>,
    /// How to run both side by side instead.
    pub side_by_side: &'static str,
    /// Each annotation across the Ingresses, most used first.
    pub annotations: Vec<AnnotationTotal>,
    /// Each Ingress, worst verdict first.
    pub ingresses: Vec<IngressReport>,
    /// Files that did not parse.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_errors: Vec<String>,
}

const SIDE_BY_SIDE: &str = "install Sluice with its own IngressClass (deploy/ creates `sluice`, \
    controller sluice.dev/ingress-controller) next to ingress-nginx, and move Ingresses one at \
    a time by setting `spec.ingressClassName: sluice`";

/// The controller ingress-nginx's IngressClass names, assumed for classes not read.
const NGINX_CONTROLLER: &str = "k8s.io/ingress-nginx";

/// What to read besides the Ingresses.
#[derive(Clone, Debug)]
pub struct Options {
    /// The annotation prefix (`--annotations-prefix`).
    pub prefix: String,
    /// The ingress-nginx ConfigMap.
    pub configmap: NamespacedName,
}

/// The report for every Ingress of `snapshot`, whatever its class. `origins` names where each
/// Ingress was read (its file and line), in the snapshot's order, when it came from files; a
/// directory may define one Ingress twice, and both are reported.
pub fn assess(
    snapshot: &Snapshot,
    origins: &[String],
    options: &Options,
    source: String,
) -> Report {
    let cm = &options.configmap;
    let cm_object = sluice_translate::config::object_ref(&cm.namespace, &cm.name);
    let config_maps: HashMap<(&str, &str), &ConfigMap> =
        snapshot.config_maps.iter().map(|c| (key_of(&c.metadata), c.as_ref())).collect();
    let secrets: HashMap<(&str, &str), &Secret> =
        snapshot.secrets.iter().map(|s| (key_of(&s.metadata), s.as_ref())).collect();
    let data_of = |ns: &str, n: &str| config_maps.get(&(ns, n)).and_then(|c| c.data.as_ref());
    let secret_of = |ns: &str, n: &str| secrets.get(&(ns, n)).copied();

    // The ConfigMap, read as translation reads it.
    let mut cm_diagnostics = Vec::new();
    let cm_data = config_maps.get(&(cm.namespace.as_str(), cm.name.as_str()));
    let global = match cm_data {
        Some(c) => sluice_translate::config::parse(
            &cm_object,
            c.data.as_ref().unwrap_or(&BTreeMap::new()),
            &data_of,
            &mut cm_diagnostics,
        ),
        None => Default::default(),
    };
    let keys = cm_data
        .and_then(|c| c.data.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| key_finding(k, &cm_diagnostics))
        .collect();

    // Translation, one class at a time: one controller serves a class, so paths collide
    // only within it.
    let groups = classes(snapshot);
    let names = unique_names(snapshot);
    let mut table_diagnostics: HashMap<(String, String), Vec<Diagnostic>> = HashMap::new();
    for members in groups.values() {
        for d in translate_class(snapshot, members, &names, options) {
            if d.object.kind == Kind::Ingress {
                table_diagnostics
                    .entry((d.object.namespace.clone(), d.object.name.clone()))
                    .or_default()
                    .push(d);
            }
        }
    }

    let cross_namespace = cm_data
        .and_then(|c| c.data.as_ref()?.get("allow-cross-namespace-resources"))
        .is_some_and(|v| annotations::parse_bool(v) == Ok(true));
    let cx = annotations::Context { global: &global, config_map: &data_of, secret: &secret_of };
    let mut ingresses: Vec<IngressReport> = snapshot
        .ingresses
        .iter()
        .enumerate()
        .map(|(i, ingress)| {
            let (ns, _) = key_of(&ingress.metadata);
            let others = table_diagnostics.remove(&(ns.to_string(), names[i].clone()));
            let mut report = assess_ingress(
                ingress,
                &cx,
                &options.prefix,
                cross_namespace,
                others.unwrap_or_default(),
            );
            report.file = origins.get(i).cloned();
            report
        })
        .collect();
    ingresses.sort_by(|a, b| {
        (a.verdict, &a.namespace, &a.name).cmp(&(b.verdict, &b.namespace, &b.name))
    });

    let mut totals = Totals { ingresses: ingresses.len(), ..Totals::default() };
    let mut snippets =
        SnippetTotals { gates_open: global.snippet_gates.open(), ..SnippetTotals::default() };
    for i in &ingresses {
        match i.verdict {
            Verdict::MovesAsIs => totals.moves_as_is += 1,
            Verdict::MovesWithDifferences => totals.moves_with_differences += 1,
            Verdict::Answers503 => totals.answers_503 += 1,
        }
        let snippet: Vec<&Finding> =
            i.annotations.iter().filter(|f| f.name.ends_with("-snippet")).collect();
        if !snippet.is_empty() {
            snippets.ingresses += 1;
            if snippet.iter().all(|f| f.fate != Fate::Refused) {
                snippets.covered += 1;
            }
        }
        let nginx: Vec<&&Finding> = snippet
            .iter()
            .filter(|f| f.name == "configuration-snippet" || f.name == "server-snippet")
            .collect();
        if !nginx.is_empty() {
            snippets.nginx += 1;
            if nginx.iter().all(|f| f.fate != Fate::Refused) {
                snippets.nginx_covered += 1;
            }
        }
        if i.annotations
            .iter()
            .any(|f| f.name.starts_with("enable-modsecurity") || f.name == "modsecurity-snippet")
        {
            snippets.modsecurity += 1;
        }
    }

    let classes = groups
        .iter()
        .map(|(class, members)| plan(class, members.len(), snapshot, members, &options.prefix))
        .collect();

    Report {
        source,
        totals,
        snippets,
        configmap: ConfigMapReport { name: cm.to_string(), found: cm_data.is_some(), keys },
        classes,
        side_by_side: SIDE_BY_SIDE,
        annotations: annotation_totals(&ingresses),
        ingresses,
        source_errors: Vec::new(),
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// The class an Ingress names, `None` without one.
fn class_of(ingress: &Ingress) -> Option<&str> {
    ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).or_else(|| {
        ingress.metadata.annotations.as_ref()?.get(LEGACY_CLASS_ANNOTATION).map(String::as_str)
    })
}

const NO_CLASS: &str = "(none)";

/// The Ingresses of each class, by index in the snapshot.
fn classes(snapshot: &Snapshot) -> BTreeMap<String, Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, ingress) in snapshot.ingresses.iter().enumerate() {
        groups.entry(class_of(ingress).unwrap_or(NO_CLASS).to_string()).or_default().push(i);
    }
    groups
}

/// Each Ingress's name, made unique within its namespace: `name~2` for the second definition
/// of one name (in a directory of manifests gathered from several places).
fn unique_names(snapshot: &Snapshot) -> Vec<String> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    snapshot
        .ingresses
        .iter()
        .map(|ingress| {
            let (ns, name) = key_of(&ingress.metadata);
            let n = seen.entry((ns, name)).or_default();
            *n += 1;
            if *n == 1 { name.to_string() } else { format!("{name}~{n}") }
        })
        .collect()
}

/// The diagnostics translation gives the Ingresses `members` when one controller serves them
/// all: a copy of the snapshot where they, and only they, name a class of Sluice's (under
/// their unique `names`).
fn translate_class(
    snapshot: &Snapshot,
    members: &[usize],
    names: &[String],
    options: &Options,
) -> Vec<Diagnostic> {
    const CLASS: &str = "sluice-migrate";
    let all: Vec<&Arc<Ingress>> = snapshot.ingresses.iter().collect();
    let ingresses = members
        .iter()
        .map(|&i| {
            let mut ingress = Ingress::clone(all[i]);
            ingress.metadata.name = Some(names[i].clone());
            ingress.spec.get_or_insert_with(Default::default).ingress_class_name =
                Some(CLASS.into());
            Arc::new(ingress)
        })
        .collect();
    let class = IngressClass {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(CLASS.into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec { controller: Some(CLASS.into()), ..Default::default() }),
    };
    let copy = Snapshot {
        ingresses: chunk(ingresses),
        ingress_classes: chunk(vec![Arc::new(class)]),
        ..snapshot.clone()
    };
    let settings = Settings {
        ingress_class: CLASS.into(),
        controller_class: CLASS.into(),
        annotations_prefix: options.prefix.clone(),
        configmap: Some(options.configmap.clone()),
        // Ingresses with `ssl-passthrough` were served with the flag on.
        enable_ssl_passthrough: true,
        ..Settings::default()
    };
    let table = sluice_translate::translate(&copy, &settings);
    table.diagnostics.iter().cloned().collect()
}

/// Diagnostics of annotations are reported per annotation; these reasons are about one.
fn is_annotation_reason(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidAnnotation
            | Reason::UnsupportedAnnotation
            | Reason::UnenforceableAnnotation
            | Reason::UnknownAnnotation
            | Reason::SnippetRefused
    )
}

/// Findings of translation that ingress-nginx does not share: they change the verdict.
fn differs_from_nginx(reason: Reason) -> Option<Verdict> {
    match reason {
        // ExternalName Services are served by ingress-nginx, not by Sluice: 503.
        Reason::UnsupportedService => Some(Verdict::Answers503),
        Reason::UnsupportedFeature => Some(Verdict::MovesWithDifferences),
        _ => None,
    }
}

fn assess_ingress(
    ingress: &Ingress,
    cx: &annotations::Context<'_>,
    prefix: &str,
    cross_namespace: bool,
    table_diagnostics: Vec<Diagnostic>,
) -> IngressReport {
    let (ns, name) = key_of(&ingress.metadata);
    let object = ObjectRef::new(Kind::Ingress, ns, name);
    let mut diagnostics = Vec::new();
    let parsed = annotations::parse(ingress, &object, prefix, cx, &mut diagnostics);
    let names: Vec<&str> = ingress
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix(prefix)?.strip_prefix('/'))
        .collect();
    let mut findings: Vec<Finding> = names
        .iter()
        .map(|&n| {
            let mine: Vec<&Diagnostic> =
                diagnostics.iter().filter(|d| about(d, prefix) == Some(n)).collect();
            annotation_finding(n, &mine, cross_namespace)
        })
        .collect();
    findings.sort_by(|a, b| a.name.cmp(&b.name));

    let mut verdict = Verdict::MovesAsIs;
    for f in &findings {
        verdict = verdict.min(match f.fate {
            Fate::Refused => Verdict::Answers503,
            Fate::Differs | Fate::Ignored => Verdict::MovesWithDifferences,
            Fate::Exact | Fate::Accepted => Verdict::MovesAsIs,
        });
    }
    let mut answers_503 = parsed.fail_closed.filter(|why| !shared_with_nginx(why, cross_namespace));
    if answers_503.is_none() {
        answers_503 =
            findings.iter().find(|f| f.fate == Fate::Refused).and_then(|f| f.note.clone());
    }
    if answers_503.is_some() {
        verdict = Verdict::Answers503;
    }
    let mut notes = Vec::new();
    // Annotation diagnostics no annotation claims (a family naming two at once).
    for d in diagnostics.iter().filter(|d| about(d, prefix).is_none()) {
        notes.push(d.message.clone());
    }
    // Those about annotations were found again above, by the Ingress's own parse.
    let others = table_diagnostics
        .iter()
        .filter(|d| !is_annotation_reason(d.reason) && about(d, prefix).is_none());
    for d in others {
        if let Some(v) = differs_from_nginx(d.reason) {
            verdict = verdict.min(v);
        }
        notes.push(format!("{}: {}", d.reason, d.message));
    }
    notes.sort();
    notes.dedup();
    IngressReport {
        namespace: ns.to_string(),
        name: name.to_string(),
        file: None,
        class: class_of(ingress).unwrap_or(NO_CLASS).to_string(),
        verdict,
        annotations: findings,
        answers_503,
        notes,
    }
}

/// Whether a refusal is one ingress-nginx makes too: an object the annotation names (a
/// Secret, a ConfigMap) does not exist, or is in another namespace (`cross_namespace`: the
/// ConfigMap's `allow-cross-namespace-resources`). It moves as it is, with a note.
fn shared_with_nginx(why: &str, cross_namespace: bool) -> bool {
    why.contains(" does not exist")
        // ingress-nginx refuses them too since v1.12, unless `allow-cross-namespace-resources`.
        || (!cross_namespace && why.contains("in another namespace than the Ingress"))
}

/// The annotation (without the prefix) a diagnostic is about: its message starts with the
/// prefixed name, as every family writes it.
fn about<'d>(d: &'d Diagnostic, prefix: &str) -> Option<&'d str> {
    let rest = d.message.strip_prefix(prefix)?.strip_prefix('/')?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
    Some(&rest[..end])
}

/// The fate of annotation `name` in one Ingress: the catalogue's, made worse by what the
/// diagnostics about its value say.
fn annotation_finding(name: &str, diagnostics: &[&Diagnostic], cross_namespace: bool) -> Finding {
    let (mut fate, mut note) = match catalog::support(name) {
        Some(Support::Implemented) => match catalog::difference(name) {
            Some(d) => (Fate::Differs, Some(d.to_string())),
            None => (Fate::Exact, None),
        },
        Some(Support::Accepted(why)) => (Fate::Accepted, Some(why.to_string())),
        Some(Support::Pending) => (Fate::Ignored, Some(pending_consequence(name).to_string())),
        Some(Support::Enforced) => {
            (Fate::Refused, Some("cannot be enforced by Sluice: the routes answer 503".into()))
        }
        Some(Support::Snippet) => (
            Fate::Refused,
            Some("raw NGINX configuration, never applied: the routes answer 503".into()),
        ),
        Some(Support::Removed(by)) => {
            (Fate::Accepted, Some(format!("removed from ingress-nginx ({by}): ignored by both")))
        }
        None => (
            Fate::Accepted,
            Some("not an ingress-nginx annotation (a typo?): ignored by both".into()),
        ),
    };
    for d in diagnostics {
        if shared_with_nginx(&d.message, cross_namespace) {
            // ingress-nginx refuses the same way.
            let why = format!("{} (ingress-nginx refuses it too)", d.message);
            note = Some(note.map_or(why.clone(), |n| format!("{n}; {why}")));
            continue;
        }
        let worse = match (d.severity, d.reason) {
            (_, Reason::SnippetRefused | Reason::UnenforceableAnnotation) => Fate::Refused,
            (Severity::Error, _) if d.message.contains("answer 503") => Fate::Refused,
            // An invalid value: the default applies where ingress-nginx's own rules apply.
            (Severity::Error, _) => Fate::Differs,
            (Severity::Warning, _) => fate,
        };
        if worse > fate || d.severity == Severity::Error {
            fate = fate.max(worse);
            note = Some(d.message.clone());
        }
    }
    Finding { name: name.to_string(), fate, note }
}

/// What an annotation Sluice does not implement yet means for its Ingress.
fn pending_consequence(name: &str) -> &'static str {
    match name {
        "enable-modsecurity" | "enable-owasp-core-rules" | "modsecurity-transaction-id" => {
            "Sluice has no ModSecurity yet: requests reach the backend without the firewall"
        }
        n if n.contains("opentelemetry") => "Sluice exports no traces yet: ignored",
        _ => "not implemented by Sluice: ignored",
    }
}

/// The fate of ConfigMap key `key`, made worse by what the diagnostics about it say.
fn key_finding(key: &str, diagnostics: &[Diagnostic]) -> Finding {
    let (mut fate, mut note) = match config_keys::support(key) {
        Some(KeySupport::Implemented) => match config_keys::difference(key) {
            Some(d) => (Fate::Differs, Some(d.to_string())),
            None => (Fate::Exact, None),
        },
        Some(KeySupport::Accepted(why)) => (Fate::Accepted, Some(why.to_string())),
        Some(KeySupport::Pending) => {
            (Fate::Ignored, Some("not implemented by Sluice: ignored".to_string()))
        }
        Some(KeySupport::Snippet) => {
            (Fate::Refused, Some("raw NGINX configuration, never applied".to_string()))
        }
        Some(KeySupport::Removed(by)) => {
            (Fate::Accepted, Some(format!("removed from ingress-nginx ({by}): ignored by both")))
        }
        None => (
            Fate::Accepted,
            Some("not an ingress-nginx key (a typo?): ignored by both".to_string()),
        ),
    };
    let prefix = format!("{key}:");
    for d in diagnostics.iter().filter(|d| d.message.starts_with(&prefix)) {
        let worse = match d.severity {
            Severity::Error if d.message.contains("answer 503") => Fate::Refused,
            Severity::Error if d.reason == Reason::SnippetRefused => Fate::Refused,
            Severity::Error => Fate::Differs,
            Severity::Warning => fate,
        };
        fate = fate.max(worse);
        note = Some(d.message.clone());
    }
    Finding { name: key.to_string(), fate, note }
}

/// Each annotation's count across the Ingresses, most used first.
fn annotation_totals(ingresses: &[IngressReport]) -> Vec<AnnotationTotal> {
    let mut by_name: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for f in ingresses.iter().flat_map(|i| &i.annotations) {
        let entry = by_name.entry(&f.name).or_default();
        entry.0 += 1;
        let base = annotation_finding(&f.name, &[], false).fate;
        if f.fate > base {
            entry.1 += 1;
        }
    }
    let mut totals: Vec<AnnotationTotal> = by_name
        .into_iter()
        .map(|(name, (ingresses, not_applied))| {
            let base = annotation_finding(name, &[], false);
            AnnotationTotal {
                name: name.to_string(),
                fate: base.fate,
                note: base.note,
                ingresses,
                not_applied,
            }
        })
        .collect();
    totals.sort_by(|a, b| b.ingresses.cmp(&a.ingresses).then_with(|| a.name.cmp(&b.name)));
    totals
}

/// The flags that serve `class` in place of ingress-nginx.
fn plan(
    class: &str,
    count: usize,
    snapshot: &Snapshot,
    members: &[usize],
    prefix: &str,
) -> ClassPlan {
    let all: Vec<&Arc<Ingress>> = snapshot.ingresses.iter().collect();
    let by_spec = members.iter().any(|&i| {
        all[i].spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) == Some(class)
    });
    let mut flags = Vec::new();
    let mut controller = None;
    if class == NO_CLASS {
        flags.push("--watch-ingress-without-class".to_string());
    } else {
        flags.push(format!("--ingress-class {class}"));
        if by_spec {
            let read =
                snapshot.ingress_classes.iter().find(|c| c.metadata.name.as_deref() == Some(class));
            let name = read
                .and_then(|c| c.spec.as_ref()?.controller.clone())
                .unwrap_or_else(|| NGINX_CONTROLLER.to_string());
            flags.push(format!("--controller-class {name}"));
            controller = Some(name);
        }
    }
    let passthrough = format!("{prefix}/ssl-passthrough");
    if members.iter().any(|&i| {
        all[i]
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.get(&passthrough).is_some_and(|v| v == "true"))
    }) {
        flags.push("--enable-ssl-passthrough".to_string());
    }
    if prefix != "nginx.ingress.kubernetes.io" {
        flags.push(format!("--annotations-prefix {prefix}"));
    }
    ClassPlan {
        class: class.to_string(),
        ingresses: count,
        controller,
        take_over: format!("sluice serve {}", flags.join(" ")),
    }
}

fn percent(n: usize, of: usize) -> String {
    let rounded = (n * 100 + of / 2).checked_div(of).unwrap_or(0);
    format!("{rounded}%")
}

/// Aligned columns, as kubectl prints them.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The findings worth a line: everything but exact and accepted.
fn notable(findings: &[Finding]) -> impl Iterator<Item = &Finding> {
    findings.iter().filter(|f| matches!(f.fate, Fate::Differs | Fate::Ignored | Fate::Refused))
}

impl Report {
    /// The text for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(
            out,
            "Migration from ingress-nginx: {} Ingresses in {}",
            t.ingresses, self.source
        );
        let _ = writeln!(
            out,
            "ConfigMap {}: {}",
            self.configmap.name,
            if self.configmap.found {
                "read"
            } else {
                "not found, ingress-nginx's defaults assumed"
            }
        );
        out.push('\n');
        out.push_str(&columns(&[
            vec![
                Verdict::MovesAsIs.as_str().into(),
                t.moves_as_is.to_string(),
                percent(t.moves_as_is, t.ingresses),
            ],
            vec![
                Verdict::MovesWithDifferences.as_str().into(),
                t.moves_with_differences.to_string(),
                percent(t.moves_with_differences, t.ingresses),
            ],
            vec![
                Verdict::Answers503.as_str().into(),
                t.answers_503.to_string(),
                percent(t.answers_503, t.ingresses),
            ],
        ]));
        out.push('\n');
        let _ = writeln!(out, "{}", self.snippets_sentence());
        out.push('\n');
        let mut rows =
            vec![vec!["INGRESS".to_string(), "CLASS".into(), "VERDICT".into(), "FINDINGS".into()]];
        for i in &self.ingresses {
            rows.push(vec![
                format!("{}/{}", i.namespace, i.name),
                i.class.clone(),
                i.verdict.as_str().into(),
                notable(&i.annotations)
                    .map(|f| format!("{} ({})", f.name, f.fate.short()))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
        out.push_str(&columns(&rows));
        out.push('\n');
        let mut rows =
            vec![vec!["ANNOTATION".to_string(), "INGRESSES".into(), "FATE".into(), "NOTE".into()]];
        for a in &self.annotations {
            let mut note = a.note.clone().unwrap_or_default();
            if a.not_applied > 0 {
                let _ = write!(
                    note,
                    "{}{} with a value not applied",
                    if note.is_empty() { "" } else { "; " },
                    a.not_applied
                );
            }
            rows.push(vec![a.name.clone(), a.ingresses.to_string(), a.fate.as_str().into(), note]);
        }
        out.push_str(&columns(&rows));
        if !self.configmap.keys.is_empty() {
            out.push('\n');
            let mut rows = vec![vec!["CONFIGMAP KEY".to_string(), "FATE".into(), "NOTE".into()]];
            for k in &self.configmap.keys {
                rows.push(vec![
                    k.name.clone(),
                    k.fate.as_str().into(),
                    k.note.clone().unwrap_or_default(),
                ]);
            }
            out.push_str(&columns(&rows));
        }
        out.push_str("\nTaking over from ingress-nginx, per class:\n");
        let mut rows = Vec::new();
        for c in &self.classes {
            rows.push(vec![
                format!("  {}", c.class),
                format!("{} Ingresses", c.ingresses),
                c.take_over.clone(),
            ]);
        }
        out.push_str(&columns(&rows));
        let _ = writeln!(out, "Or side by side: {}.", self.side_by_side);
        let details: Vec<&IngressReport> = self
            .ingresses
            .iter()
            .filter(|i| i.verdict != Verdict::MovesAsIs || !i.notes.is_empty())
            .collect();
        if !details.is_empty() {
            out.push_str("\nDetails:\n");
            for i in details {
                let from = i.file.as_deref().map(|f| format!(", {f}")).unwrap_or_default();
                let _ = writeln!(out, "{}/{} ({}{from}):", i.namespace, i.name, i.verdict.as_str());
                if let Some(why) = &i.answers_503
                    && !i.annotations.iter().any(|f| f.note.as_ref() == Some(why))
                {
                    let _ = writeln!(out, "  answers 503: {why}");
                }
                for f in notable(&i.annotations) {
                    let _ = writeln!(
                        out,
                        "  {} [{}]: {}",
                        f.name,
                        f.fate.as_str(),
                        f.note.as_deref().unwrap_or("")
                    );
                }
                for n in &i.notes {
                    let _ = writeln!(out, "  note: {n}");
                }
            }
        }
        for e in &self.source_errors {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }

    /// The snippet and ModSecurity counts in a sentence.
    fn snippets_sentence(&self) -> String {
        let s = &self.snippets;
        let mut out = format!(
            "Snippets: {} Ingresses carry a snippet annotation, {} of them configuration-snippet or server-snippet; ",
            s.ingresses, s.nginx
        );
        if s.gates_open {
            let _ = write!(
                out,
                "Sluice reads the NGINX snippets of {} of those whole, and {} Ingresses' snippets all; the others answer 503.",
                s.nginx_covered, s.covered
            );
        } else if s.ingresses > 0 {
            out.push_str(concat!(
                "the ConfigMap keeps ingress-nginx's snippet gates closed ",
                "(allow-snippet-annotations, annotations-risk-level: Critical), so both refuse ",
                "them; if your cluster opens them, give its ConfigMap to see which Sluice reads."
            ));
        }
        let _ = write!(
            out,
            " {} use ModSecurity (enable-modsecurity, modsecurity-snippet), which Sluice does not have: their firewall is off.",
            s.modsecurity
        );
        out
    }

    /// Markdown, to paste in a ticket.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(out, "# Migration from ingress-nginx to Sluice\n");
        let _ = writeln!(
            out,
            "{} Ingresses in `{}`; ConfigMap `{}` {}.\n",
            t.ingresses,
            self.source,
            self.configmap.name,
            if self.configmap.found {
                "read"
            } else {
                "not found (ingress-nginx's defaults assumed)"
            }
        );
        let _ = writeln!(out, "| verdict | Ingresses | share |\n|---|---|---|");
        for (v, n) in [
            (Verdict::MovesAsIs, t.moves_as_is),
            (Verdict::MovesWithDifferences, t.moves_with_differences),
            (Verdict::Answers503, t.answers_503),
        ] {
            let _ = writeln!(out, "| {} | {n} | {} |", v.as_str(), percent(n, t.ingresses));
        }
        let _ = writeln!(out, "\n{}\n", self.snippets_sentence());
        let _ = writeln!(out, "## Taking over\n\n| class | Ingresses | flags |\n|---|---|---|");
        for c in &self.classes {
            let _ = writeln!(out, "| `{}` | {} | `{}` |", c.class, c.ingresses, c.take_over);
        }
        let _ = writeln!(out, "\nOr side by side: {}.\n", self.side_by_side);
        let _ = writeln!(
            out,
            "## Ingresses\n\n| Ingress | class | verdict | findings |\n|---|---|---|---|"
        );
        for i in &self.ingresses {
            let findings: Vec<String> = notable(&i.annotations)
                .map(|f| format!("`{}` ({})", f.name, f.fate.short()))
                .collect();
            let _ = writeln!(
                out,
                "| `{}/{}` | {} | {} | {} |",
                i.namespace,
                i.name,
                esc(&i.class),
                i.verdict.as_str(),
                findings.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n## Annotations\n\n| annotation | Ingresses | fate | note |\n|---|---|---|---|"
        );
        for a in &self.annotations {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {}{} |",
                a.name,
                a.ingresses,
                a.fate.as_str(),
                esc(a.note.as_deref().unwrap_or("")),
                if a.not_applied > 0 {
                    format!(" ({} with a value not applied)", a.not_applied)
                } else {
                    String::new()
                }
            );
        }
        if !self.configmap.keys.is_empty() {
            let _ = writeln!(out, "\n## ConfigMap keys\n\n| key | fate | note |\n|---|---|---|");
            for k in &self.configmap.keys {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    k.name,
                    k.fate.as_str(),
                    esc(k.note.as_deref().unwrap_or(""))
                );
            }
        }
        let details: Vec<&IngressReport> =
            self.ingresses.iter().filter(|i| i.verdict != Verdict::MovesAsIs).collect();
        if !details.is_empty() {
            let _ = writeln!(out, "\n## Details\n");
            for i in details {
                let from = i.file.as_deref().map(|f| format!(" (`{f}`)")).unwrap_or_default();
                let _ =
                    writeln!(out, "- `{}/{}`{from}: {}", i.namespace, i.name, i.verdict.as_str());
                for f in notable(&i.annotations) {
                    let _ = writeln!(
                        out,
                        "  - `{}` ({}): {}",
                        f.name,
                        f.fate.as_str(),
                        esc(f.note.as_deref().unwrap_or(""))
                    );
                }
                for n in &i.notes {
                    let _ = writeln!(out, "  - note: {}", esc(n));
                }
            }
        }
        out
    }

    /// Whether `fail_on` says the move should not go ahead.
    pub fn fails(&self, fail_on: FailOn) -> bool {
        !self.source_errors.is_empty() && fail_on != FailOn::Never
            || match fail_on {
                FailOn::Never => false,
                FailOn::Answers503 => self.totals.answers_503 > 0,
                FailOn::Differences => self.totals.moves_as_is < self.totals.ingresses,
            }
    }
}

/// Reads what `args` names, prints the report, and returns the exit status: 0 when the move
/// can go ahead (by `--fail-on`), 1 when it should not, 2 when the input cannot be read.
pub async fn run(args: &MigrateArgs) -> ExitCode {
    let options =
        Options { prefix: args.annotations_prefix.clone(), configmap: args.configmap.clone() };
    let loaded =
        if args.paths.is_empty() { from_cluster(args).await } else { from_dirs(&args.paths) };
    let (snapshot, origins, source, errors) = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = assess(&snapshot, &origins, &options, source);
    report.source_errors = errors;
    let text = match args.output {
        OutputFormat::Table => report.to_table(),
        OutputFormat::Markdown => report.to_markdown(),
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    // A reader that stops early (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if report.fails(args.fail_on) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// A snapshot, where each of its Ingresses was read (files only), the source's name, and the
/// files that do not parse.
type Loaded = (Snapshot, Vec<String>, String, Vec<String>);

/// A snapshot of the manifests under `paths` (directories or files: the manifests, and
/// ingress-nginx's ConfigMap if kept elsewhere) with every Ingress they define, even one
/// defined twice.
fn from_dirs(paths: &[PathBuf]) -> Result<Loaded, String> {
    use sluice_manifests::Object;
    let mut snapshot = Snapshot::default();
    let (mut ingresses, mut origins, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let (mut classes, mut services, mut slices, mut secrets, mut maps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Objects of other kinds defined twice: the first definition, as `serve` takes it.
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let mut dir = sluice_manifests::ManifestDir::new(path);
        dir.rescan().map_err(|e| format!("cannot read manifests from {}: {e}", path.display()))?;
        for (file, line, object) in dir.objects() {
            if let Object::Ingress(ingress) = object {
                ingresses.push(ingress.clone());
                origins.push(format!("{}:{line}", file.display()));
                continue;
            }
            if !seen.insert(object.object_ref()) {
                continue;
            }
            match object {
                Object::IngressClass(o) => classes.push(o.clone()),
                Object::Service(o) => services.push(o.clone()),
                Object::EndpointSlice(o) => slices.push(o.clone()),
                Object::Secret(o) => secrets.push(o.clone()),
                Object::ConfigMap(o) => maps.push(o.clone()),
                Object::Ingress(_) => {}
            }
        }
        errors.extend(dir.errors().iter().map(ToString::to_string));
    }
    snapshot.ingresses = chunk(ingresses);
    snapshot.ingress_classes = chunk(classes);
    snapshot.services = chunk(services);
    snapshot.endpoint_slices = chunk(slices);
    snapshot.secrets = chunk(secrets);
    snapshot.config_maps = chunk(maps);
    snapshot.observed_at = now();
    let source = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Ok((snapshot, origins, source, errors))
}

/// Now, in seconds since the Unix epoch: certificates are judged expired against it.
fn now() -> Option<i64> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_secs()).ok()
}

/// A snapshot of what the controller would read from the cluster (listed once, read-only).
async fn from_cluster(args: &MigrateArgs) -> Result<Loaded, String> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, ListParams};
    use sluice_model::{LeanService, LeanSlice};

    let client = client(args).await?;
    let context = args.context.clone().unwrap_or_else(|| "the current context".into());
    eprintln!(
        "reading Ingresses, IngressClasses, Services, EndpointSlices, Secrets and ConfigMaps from {context}..."
    );
    async fn list<K>(client: &kube::Client, namespaces: &[String]) -> Result<Vec<Arc<K>>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let apis: Vec<Api<K>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
        };
        let mut out = Vec::new();
        for api in apis {
            let items = api
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("cannot list {}: {e}", K::plural(&Default::default())))?;
            out.extend(items.items.into_iter().map(Arc::new));
        }
        Ok(out)
    }
    let ns = &args.namespace;
    let mut cm_namespaces = ns.clone();
    if !ns.is_empty() && !ns.contains(&args.configmap.namespace) {
        cm_namespaces.push(args.configmap.namespace.clone());
    }
    let ingresses = list::<Ingress>(&client, ns).await?;
    let classes = Api::<IngressClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list ingressclasses: {e}"))?
        .items;
    let services = list::<Service>(&client, ns).await?;
    let slices = list::<EndpointSlice>(&client, ns).await?;
    let secrets = list::<Secret>(&client, ns).await?;
    let config_maps = list::<ConfigMap>(&client, &cm_namespaces).await?;
    let snapshot = Snapshot {
        ingresses: chunk(ingresses),
        ingress_classes: chunk(classes.into_iter().map(Arc::new).collect()),
        services: chunk(
            services.iter().map(|s| Arc::new(LeanService::from(Service::clone(s)))).collect(),
        ),
        endpoint_slices: chunk(
            slices.iter().map(|s| Arc::new(LeanSlice::from(EndpointSlice::clone(s)))).collect(),
        ),
        secrets: chunk(secrets),
        config_maps: chunk(config_maps),
        observed_at: now(),
    };
    let scope = if ns.is_empty() {
        "all namespaces".to_string()
    } else {
        format!("namespaces {}", ns.join(", "))
    };
    Ok((snapshot, Vec::new(), format!("{context} ({scope})"), Vec::new()))
}

/// One chunk of objects.
fn chunk<T: sluice_model::Named>(objects: Vec<Arc<T>>) -> Objects<T> {
    Objects::from_chunks([sluice_model::Chunk::new(objects)])
}

/// A client for `--kubeconfig` and `--context`, else the usual inference.
async fn client(args: &MigrateArgs) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| e.to_string())?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| e.to_string())?,
        (None, None) => kube::Config::infer().await.map_err(|e| {
            format!("no Kubernetes configuration found (KUBECONFIG or ~/.kube/config); give a manifests directory instead: {e}")
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "nginx.ingress.kubernetes.io";

    /// An Ingress `ns/name` of `class` with `annotations`, routing `/` of `name.example` to
    /// Service `web`.
    fn ingress(name: &str, class: &str, annotations: &[(&str, &str)]) -> String {
        let mut yaml = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: ns\n  annotations:\n    note: fixture\n"
        );
        for (k, v) in annotations {
            let key = if k.contains('/') { k.to_string() } else { format!("{P}/{k}") };
            yaml.push_str(&format!("    {key}: {v:?}\n"));
        }
        yaml.push_str("spec:\n");
        if !class.is_empty() {
            yaml.push_str(&format!("  ingressClassName: {class}\n"));
        }
        yaml.push_str(&format!(
            "  rules:\n  - host: {name}.example\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
        ));
        yaml
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: ns\nspec:\n  ports:\n  - port: 80\n";

    fn report(docs: &[String]) -> Report {
        let mut snapshot = Snapshot::default();
        let (mut ingresses, mut classes, mut services, mut maps, mut secrets) =
            (vec![], vec![], vec![], vec![], vec![]);
        for doc in docs {
            for (_, object) in sluice_manifests::parse_str(doc).expect("fixture parses") {
                match object {
                    sluice_manifests::Object::Ingress(o) => ingresses.push(o),
                    sluice_manifests::Object::IngressClass(o) => classes.push(o),
                    sluice_manifests::Object::Service(o) => services.push(o),
                    sluice_manifests::Object::ConfigMap(o) => maps.push(o),
                    sluice_manifests::Object::Secret(o) => secrets.push(o),
                    sluice_manifests::Object::EndpointSlice(_) => {}
                }
            }
        }
        snapshot.ingresses = chunk(ingresses);
        snapshot.ingress_classes = chunk(classes);
        snapshot.services = chunk(services);
        snapshot.config_maps = chunk(maps);
        snapshot.secrets = chunk(secrets);
        let options = Options {
            prefix: P.into(),
            configmap: NamespacedName::new("ingress-nginx", "ingress-nginx-controller"),
        };
        assess(&snapshot, &[], &options, "fixtures".into())
    }

    fn verdict_of(r: &Report, name: &str) -> Verdict {
        r.ingresses.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("{name}")).verdict
    }

    fn finding<'r>(r: &'r Report, ingress: &str, annotation: &str) -> &'r Finding {
        let i = r.ingresses.iter().find(|i| i.name == ingress).expect("the Ingress");
        i.annotations.iter().find(|f| f.name == annotation).expect("the annotation")
    }

    #[test]
    fn verdicts_follow_each_annotations_fate_and_value() {
        let r = report(&[
            SERVICE.into(),
            ingress("plain", "nginx", &[]),
            ingress("tuned", "nginx", &[("proxy-body-size", "8m"), ("proxy-buffer-size", "16k")]),
            ingress("mirrored", "nginx", &[("mirror-target", "http://m.example/$request_uri")]),
            ingress("firewalled", "nginx", &[("enable-modsecurity", "true")]),
            ingress("snippet", "nginx", &[("configuration-snippet", "more_set_headers \"A: b\";")]),
            ingress("digest", "nginx", &[("auth-type", "digest"), ("auth-secret", "users")]),
            ingress("typo", "nginx", &[("proxy-body-size", "5t")]),
            ingress("no-secret", "nginx", &[("auth-type", "basic"), ("auth-secret", "gone")]),
            ingress("removed", "nginx", &[("secure-backends", "true"), ("no-such-thing", "1")]),
        ]);
        assert_eq!(verdict_of(&r, "plain"), Verdict::MovesAsIs);
        assert_eq!(verdict_of(&r, "tuned"), Verdict::MovesAsIs);
        assert_eq!(finding(&r, "tuned", "proxy-body-size").fate, Fate::Exact);
        assert_eq!(finding(&r, "tuned", "proxy-buffer-size").fate, Fate::Accepted);
        assert_eq!(verdict_of(&r, "mirrored"), Verdict::MovesWithDifferences);
        let mirror = finding(&r, "mirrored", "mirror-target");
        assert_eq!(
            (mirror.fate, mirror.note.as_deref()),
            (Fate::Differs, catalog::difference("mirror-target"))
        );
        assert_eq!(verdict_of(&r, "firewalled"), Verdict::MovesWithDifferences);
        assert!(
            finding(&r, "firewalled", "enable-modsecurity")
                .note
                .as_ref()
                .unwrap()
                .contains("firewall")
        );
        assert_eq!(verdict_of(&r, "digest"), Verdict::Answers503);
        assert_eq!(finding(&r, "digest", "auth-type").fate, Fate::Refused);
        // An invalid value: the default applies, named in the note.
        assert_eq!(verdict_of(&r, "typo"), Verdict::MovesWithDifferences);
        assert!(finding(&r, "typo", "proxy-body-size").note.as_ref().unwrap().contains("5t"));
        // A missing Secret fails closed under both controllers: it moves, with the reason.
        assert_eq!(verdict_of(&r, "no-secret"), Verdict::MovesAsIs);
        let i = r.ingresses.iter().find(|i| i.name == "no-secret").unwrap();
        assert!(
            i.annotations
                .iter()
                .any(|f| f.note.as_ref().is_some_and(|n| n.contains("refuses it too"))),
            "{i:?}"
        );
        // Removed and unknown names are ignored by both.
        assert_eq!(verdict_of(&r, "removed"), Verdict::MovesAsIs);
        // Worst first, and the totals add up.
        assert_eq!(r.ingresses[0].verdict, Verdict::Answers503);
        let t = &r.totals;
        assert_eq!(
            (t.ingresses, t.moves_as_is, t.moves_with_differences, t.answers_503),
            (9, 4, 3, 2)
        );
        let body = r.annotations.iter().find(|a| a.name == "proxy-body-size").unwrap();
        assert_eq!((body.ingresses, body.not_applied, body.fate), (2, 1, Fate::Exact));
    }

    #[test]
    fn snippets_and_modsecurity_are_counted() {
        let r = report(&[
            ingress("a", "nginx", &[("server-snippet", "return 403;")]),
            ingress(
                "b",
                "nginx",
                &[("enable-modsecurity", "true"), ("modsecurity-snippet", "SecRuleEngine On")],
            ),
            ingress("c", "nginx", &[]),
        ]);
        assert_eq!((r.snippets.ingresses, r.snippets.modsecurity), (2, 1));
        assert_eq!(verdict_of(&r, "b"), Verdict::Answers503);
    }

    #[test]
    fn configmap_keys_get_their_fate() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ingress-nginx-controller\n  namespace: ingress-nginx\ndata:\n  worker-processes: \"4\"\n  use-gzip: \"true\"\n  block-cidrs: 10.0.0.0/8\n  proxy-body-size: 8m\n  http-snippet: \"map $a $b {}\"\n  whitelist-source-range: not-an-address\n  typo-key: \"1\"\n";
        let r = report(&[cm.into(), ingress("a", "nginx", &[])]);
        assert!(r.configmap.found);
        let fate = |k: &str| r.configmap.keys.iter().find(|f| f.name == k).unwrap().fate;
        assert_eq!(fate("worker-processes"), Fate::Accepted);
        assert_eq!(fate("use-gzip"), Fate::Ignored);
        assert_eq!(fate("block-cidrs"), Fate::Differs);
        assert_eq!(fate("proxy-body-size"), Fate::Exact);
        assert_eq!(fate("http-snippet"), Fate::Refused);
        assert_eq!(fate("whitelist-source-range"), Fate::Refused);
        assert_eq!(fate("typo-key"), Fate::Accepted);
        // An unreadable allow list fails every route closed.
        assert_eq!(verdict_of(&r, "a"), Verdict::Answers503);
    }

    #[test]
    fn each_class_gets_the_flags_that_take_it_over() {
        let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: internal\nspec:\n  controller: example.com/internal-nginx\n";
        let r = report(&[
            class.into(),
            ingress("a", "internal", &[]),
            ingress("b", "nginx", &[("ssl-passthrough", "true")]),
            ingress("c", "", &[("kubernetes.io/ingress.class", "legacy")]),
            ingress("d", "", &[]),
        ]);
        let flags: BTreeMap<&str, &str> =
            r.classes.iter().map(|c| (c.class.as_str(), c.take_over.as_str())).collect();
        assert_eq!(
            flags["internal"],
            "sluice serve --ingress-class internal --controller-class example.com/internal-nginx"
        );
        assert_eq!(
            flags["nginx"],
            "sluice serve --ingress-class nginx --controller-class k8s.io/ingress-nginx --enable-ssl-passthrough"
        );
        assert_eq!(flags["legacy"], "sluice serve --ingress-class legacy");
        assert_eq!(flags[NO_CLASS], "sluice serve --watch-ingress-without-class");
    }

    #[test]
    fn one_name_defined_twice_is_reported_twice() {
        let r = report(&[
            SERVICE.into(),
            ingress("same", "nginx", &[]),
            ingress("same", "nginx", &[("enable-modsecurity", "true")]),
        ]);
        let verdicts: Vec<Verdict> = r.ingresses.iter().map(|i| i.verdict).collect();
        assert_eq!(verdicts, [Verdict::MovesWithDifferences, Verdict::MovesAsIs]);
        // Translated side by side, as the directory would serve them: one loses the path.
        let collisions = r
            .ingresses
            .iter()
            .filter(|i| i.notes.iter().any(|n| n.starts_with("PathCollision")))
            .count();
        assert_eq!(collisions, 1, "{:?}", r.ingresses);
    }

    #[test]
    fn fail_on_chooses_what_stops_a_pipeline() {
        let r = report(&[
            SERVICE.into(),
            ingress("m", "nginx", &[("mirror-target", "http://m.example")]),
        ]);
        assert!(!r.fails(FailOn::Answers503));
        assert!(r.fails(FailOn::Differences));
        assert!(!r.fails(FailOn::Never));
        let r = report(&[ingress("s", "nginx", &[("auth-snippet", "x")])]);
        assert!(r.fails(FailOn::Answers503));
        assert!(!r.fails(FailOn::Never));
    }

    #[test]
    fn outputs_carry_the_verdicts() {
        let r = report(&[
            SERVICE.into(),
            ingress("m", "nginx", &[("mirror-target", "http://m.example")]),
        ]);
        let table = r.to_table();
        assert!(
            table.contains("ns/m")
                && table.contains("moves with differences")
                && table.contains("mirror-target (differs)"),
            "{table}"
        );
        let md = r.to_markdown();
        assert!(
            md.contains("| `ns/m` | nginx | moves with differences | `mirror-target` (differs) |"),
            "{md}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ingresses"][0]["verdict"], "moves-with-differences");
        assert_eq!(json["totals"]["moves_with_differences"], 1);
    }
}
