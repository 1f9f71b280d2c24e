//! `fixture-undeclared-import`: a component importing an interface the host
//! does not offer is refused when it is loaded, never run.

use flowgate::runtime::LoadError;
use flowgate_testkit::guests::{component, shared_runtime};

#[test]
fn an_undeclared_import_is_refused_at_load_naming_the_import() {
    let runtime = shared_runtime();
    let error = runtime
        .load(&component("fixture-undeclared-import"))
        .unwrap_err();
    match &error {
        LoadError::UnsupportedImports { imports } => {
            assert_eq!(imports, &vec!["fixture:undeclared/network".to_string()])
        }
        other => panic!("expected unsupported imports, got {other}"),
    }
    assert!(error.to_string().contains("`fixture:undeclared/network`"));
}
