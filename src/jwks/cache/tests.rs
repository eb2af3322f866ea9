use super::fetch::well_known;
use super::*;

#[test]
fn well_known_paths_follow_the_issuer() {
    let auth0 = Url::parse("https://t.auth0.com/").unwrap();
    assert_eq!(
        well_known(&auth0, "jwks.json").as_str(),
        "https://t.auth0.com/.well-known/jwks.json"
    );
    let keycloak = Url::parse("https://kc.example/realms/api").unwrap();
    assert_eq!(
        well_known(&keycloak, "openid-configuration").as_str(),
        "https://kc.example/realms/api/.well-known/openid-configuration"
    );
}
