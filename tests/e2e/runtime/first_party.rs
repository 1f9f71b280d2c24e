//! The three first-party plugins, as components in the real runtime, with
//! minimised views built the way the service builds them.

use std::collections::BTreeSet;

use flowgate::channel::whatsapp::payload::MessageKind;
use flowgate::plugin::{Action, DataField};
use flowgate::runtime::{Call, LoadedPlugin, PluginState, Runtime};
use flowgate::view::{self, ContactData, EventContext, MessageFacts, ProcessingState};
use flowgate_testkit::guests::{load, shared_runtime};

pub struct Harness {
    runtime: &'static Runtime,
    plugin: std::sync::Arc<LoadedPlugin>,
    pub grants: BTreeSet<DataField>,
    config: Vec<(String, String)>,
    pub processing: ProcessingState,
    state: PluginState,
}

impl Harness {
    pub fn new(name: &str, config: &[(&str, &str)]) -> Harness {
        let runtime = shared_runtime();
        let plugin = load(runtime, name);
        let grants = plugin.manifest.fields.iter().copied().collect();
        let processing = ProcessingState::consenting_to(&plugin.manifest);
        Harness {
            runtime,
            plugin,
            grants,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            processing,
            state: PluginState::default(),
        }
    }

    /// The plugin's manifest, as the host admitted it.
    pub fn manifest(&self) -> &flowgate::plugin::Manifest {
        &self.plugin.manifest
    }

    /// Run one message and keep the plugin's state for the next.
    pub fn message(
        &mut self,
        contact: &ContactData,
        text: &str,
        at: u64,
        window_open: bool,
    ) -> Vec<Action> {
        let disclosure = view::disclose(&self.plugin.manifest, &self.grants, &self.processing)
            .expect("processed");
        let config = view::resolve_config(&self.plugin.manifest, &self.config).expect("config");
        let event = view::build_event(
            &disclosure,
            contact,
            EventContext {
                pseudonym: "ps_contact".into(),
                message: Some(MessageFacts {
                    kind: MessageKind::Text,
                    text: Some(text.into()),
                    received_at: at,
                    service_window_open: window_open,
                }),
                status: None,
                config,
                now: at,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        );
        let invocation = self
            .runtime
            .invoke(&self.plugin, Call::new(event).state(self.state.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(invocation.refused.is_empty(), "{:?}", invocation.refused);
        self.state = PluginState::new(invocation.state.merged());
        invocation.actions
    }
}

pub fn contact(labels: &[&str]) -> ContactData {
    ContactData {
        wa_id: Some("16505551234".into()),
        user_id: None,
        profile_name: Some("Sheena Nelson".into()),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        lead_score: None,
    }
}

#[test]
fn every_first_party_plugin_declares_only_what_it_uses() {
    let runtime = shared_runtime();
    let expect = [
        ("labeller", vec![DataField::MessageText, DataField::Labels]),
        (
            "lead-score",
            vec![DataField::MessageText, DataField::Labels],
        ),
        (
            "auto-reply",
            vec![DataField::MessageText, DataField::ProfileName],
        ),
    ];
    for (name, fields) in expect {
        let plugin = load(runtime, name);
        assert_eq!(plugin.manifest.fields, fields, "{name}");
        assert!(
            !plugin.manifest.declares(DataField::PhoneNumber),
            "{name} must not ask for phone numbers"
        );
    }
}
