use super::*;

fn claims(json: &str) -> Claims {
    crate::claims::parse_object(json.as_bytes()).unwrap()
}

#[test]
fn confirmation_reads_jkt_and_certificate_thumbprint() {
    let none = claims(r#"{"sub":"a"}"#);
    assert_eq!(confirmation(&none), Ok(Confirmation::default()));
    let both = claims(r#"{"cnf":{"jkt":"abc","x5t#S256":"def"}}"#);
    assert_eq!(
        confirmation(&both),
        Ok(Confirmation {
            jkt: Some("abc"),
            x5t_s256: Some("def"),
        })
    );
}

/// A binding this service cannot check must not be read as "no binding".
#[test]
fn unknown_or_malformed_confirmation_is_refused() {
    for cnf in [
        r#"{"cnf":"abc"}"#,
        r#"{"cnf":{}}"#,
        r#"{"cnf":{"jwk":{"kty":"EC"}}}"#,
        r#"{"cnf":{"jkt":"abc","kid":"k"}}"#,
        r#"{"cnf":{"jkt":""}}"#,
        r#"{"cnf":{"jkt":42}}"#,
        r#"{"cnf":{"x5t#S256":null}}"#,
    ] {
        assert_eq!(
            confirmation(&claims(cnf)),
            Err(AuthError::UnsupportedConfirmation),
            "{cnf}"
        );
    }
}

/// `hello` as the DER: the thumbprint is SHA-256 of the decoded bytes, base64url.
const HELLO_PEM: &str = "-----BEGIN CERTIFICATE-----\naGVs\nbG8=\n-----END CERTIFICATE-----\n";
const HELLO_X5T: &str = "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ";

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn certificate_thumbprint_hashes_the_der_of_the_url_encoded_pem() {
    assert_eq!(
        certificate_thumbprint(&url_encoded(HELLO_PEM)).as_deref(),
        Some(HELLO_X5T)
    );
    assert_eq!(
        check_certificate(HELLO_X5T, Some(&url_encoded(HELLO_PEM))),
        Ok(())
    );
}

#[test]
fn certificate_binding_fails_closed() {
    assert_eq!(
        check_certificate(HELLO_X5T, None),
        Err(AuthError::CertificateBinding("no client certificate"))
    );
    assert!(matches!(
        check_certificate("another", Some(&url_encoded(HELLO_PEM))),
        Err(AuthError::CertificateBinding(_))
    ));
    let chain = format!("{HELLO_PEM}{HELLO_PEM}");
    for bad in [
        url_encoded(&chain),
        "%ZZ".to_owned(),
        "%4".to_owned(),
        url_encoded("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
        url_encoded("aGVsbG8="),
        format!("junk{}", url_encoded(HELLO_PEM)),
    ] {
        assert_eq!(certificate_thumbprint(&bad), None, "{bad}");
        assert!(check_certificate(HELLO_X5T, Some(&bad)).is_err());
    }
}
