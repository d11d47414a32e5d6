use std::fmt;

use serde::Serialize;

use crate::ObjectRef;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// Part of the object could not be applied as written (it is rejected, in `sluice check`'s
    /// terms). The rest of the object, and every other object, still applies.
    Error,
    /// Applied, but probably not what was meant (an ignored annotation, a Service with no ready
    /// endpoint).
    Warning,
}

/// Why a diagnostic was raised: a stable, machine-readable word (it becomes the reason of a
/// Kubernetes Event and a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Reason {
    /// A rule's host is not a valid DNS name or wildcard.
    InvalidHost,
    /// A path is missing, does not start with `/`, or has no valid pathType.
    InvalidPath,
    /// A backend is neither a service nor a resource, or both.
    InvalidBackend,
    /// A resource backend (not a Service): Sluice cannot serve it; the path answers 503.
    UnsupportedBackend,
    /// The referenced Service does not exist; the path answers 503.
    MissingService,
    /// The Service exists but has no port matching the Ingress's port; the path answers 503.
    MissingServicePort,
    /// The Service's type is not supported (ExternalName); the path answers 503.
    UnsupportedService,
    /// The Service has no ready endpoint right now; the path answers 503 until one is ready.
    NoReadyEndpoints,
    /// Another Ingress, older, already serves this host and path; this one lost.
    PathCollision,
    /// An annotation's value could not be parsed; the default applies.
    InvalidAnnotation,
    /// A known ingress-nginx annotation that Sluice does not implement yet; it is ignored.
    UnsupportedAnnotation,
    /// A security annotation Sluice cannot apply: the Ingress's routes answer 503 instead of
    /// serving unprotected.
    UnenforceableAnnotation,
    /// An annotation under the prefix that ingress-nginx does not know either (a typo?).
    UnknownAnnotation,
    /// A snippet annotation (raw NGINX configuration): never honoured; the Ingress's routes
    /// answer 503.
    SnippetRefused,
    /// A ConfigMap key with an invalid value; the default applies.
    InvalidConfigMapKey,
    /// A ConfigMap key Sluice does not implement.
    UnsupportedConfigMapKey,
    /// The same object is defined twice in the source.
    DuplicateObject,
    /// The Ingress uses a feature this version does not serve yet.
    UnsupportedFeature,
    /// A referenced Secret does not exist.
    MissingSecret,
    /// A referenced Secret cannot be used (bad PEM, expired, key mismatch, wrong host).
    InvalidSecret,
    /// A canary Ingress's rule matches no main Ingress's host, path and pathType: it diverts
    /// nothing.
    UnmatchedCanary,
}

impl Reason {
    /// The reason as a word.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::InvalidBackend => "InvalidBackend",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::MissingService => "MissingService",
            Reason::MissingServicePort => "MissingServicePort",
            Reason::UnsupportedService => "UnsupportedService",
            Reason::NoReadyEndpoints => "NoReadyEndpoints",
            Reason::PathCollision => "PathCollision",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::UnenforceableAnnotation => "UnenforceableAnnotation",
            Reason::UnknownAnnotation => "UnknownAnnotation",
            Reason::SnippetRefused => "SnippetRefused",
            Reason::InvalidConfigMapKey => "InvalidConfigMapKey",
            Reason::UnsupportedConfigMapKey => "UnsupportedConfigMapKey",
            Reason::DuplicateObject => "DuplicateObject",
            Reason::UnsupportedFeature => "UnsupportedFeature",
            Reason::MissingSecret => "MissingSecret",
            Reason::InvalidSecret => "InvalidSecret",
            Reason::UnmatchedCanary => "UnmatchedCanary",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about one object, produced by translation (or by a source).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// How serious.
    pub severity: Severity,
    /// The object concerned.
    pub object: ObjectRef,
    /// A stable word for the kind of finding.
    pub reason: Reason,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Diagnostic {
    /// An error-level diagnostic.
    pub fn error(object: ObjectRef, reason: Reason, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, object, reason, message: message.into() }
    }

    /// A warning-level diagnostic.
    pub fn warning(object: ObjectRef, reason: Reason, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, object, reason, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {} [{}]: {}", self.object, self.reason, self.message)
    }
}
