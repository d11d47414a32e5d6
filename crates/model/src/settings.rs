use crate::NamespacedName;

/// The controller's flags that change how the snapshot is read. Global tunables that users set
/// at run time (body size, timeouts) come from the ConfigMap named by [`Settings::configmap`],
/// read during translation like every other object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `--ingress-class`: the value of the legacy `kubernetes.io/ingress.class` annotation that
    /// this controller serves.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of the IngressClasses this controller serves.
    pub controller_class: String,
    /// `--watch-ingress-without-class`: also serve Ingresses that name no class at all.
    pub watch_ingress_without_class: bool,
    /// `--default-backend-service`: where requests matching no rule go (else a built-in 404).
    pub default_backend_service: Option<NamespacedName>,
    /// `--annotations-prefix`: the namespace of the annotations Sluice reads.
    pub annotations_prefix: String,
    /// `--configmap`: the ConfigMap holding global settings.
    pub configmap: Option<NamespacedName>,
    /// `--default-ssl-certificate`: the Secret for TLS hosts without one, and unknown names.
    pub default_ssl_certificate: Option<NamespacedName>,
    /// `--enable-ssl-passthrough`: honour the `ssl-passthrough` annotation.
    pub enable_ssl_passthrough: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ingress_class: "sluice".into(),
            controller_class: "sluice.dev/ingress-controller".into(),
            watch_ingress_without_class: false,
            default_backend_service: None,
            annotations_prefix: "nginx.ingress.kubernetes.io".into(),
            configmap: None,
            default_ssl_certificate: None,
            enable_ssl_passthrough: false,
        }
    }
}
