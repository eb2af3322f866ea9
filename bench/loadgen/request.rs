//! The CheckRequests the load generator sends: the test kit's browser request, in the full
//! shape (every request header, about 1.6 KB encoded with an RS256 token) or the small one
//! (only `authorization`, as with `allowed_headers: [authorization]`).

use jwt_authz::testkit::{self, browser_request, set_authorization};
use jwt_authz::wire::proto::CheckRequest;

use crate::{CheckArgs, Shape};

/// Builds one CheckRequest per call from a fixed template.
pub struct Template {
    base: CheckRequest,
    no_auth: bool,
}

impl Template {
    pub fn new(args: &CheckArgs) -> Template {
        let shape = match args.shape {
            Shape::Full => testkit::Shape::Full,
            Shape::Small => testkit::Shape::Small,
        };
        let scopes = (!args.required_scopes.is_empty()).then_some(args.required_scopes.as_str());
        Template {
            base: browser_request(&args.path, scopes, shape),
            no_auth: args.no_auth,
        }
    }

    /// The request carrying `token` (or no `authorization` with `--no-auth`).
    pub fn build(&self, token: &str) -> CheckRequest {
        let mut request = self.base.clone();
        if !self.no_auth {
            set_authorization(&mut request, &format!("Bearer {token}"));
        }
        request
    }
}
