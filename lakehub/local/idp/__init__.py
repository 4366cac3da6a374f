"""Real identity providers on loopback, for the tests and the local environment.

- `lakehub.local.idp.oidc.start_oidc(...)`: an OpenID Connect provider (oidc-provider from npm, OpenID
  certified: discovery, JWKS, RS256-signed id_tokens, code flow with PKCE, refresh tokens, userinfo)
  with a login form of ours (oidc_provider.mjs), in its own process.
- `lakehub.local.idp.ldap.start_ldap(...)`: OpenLDAP's slapd in the foreground on a loopback port with
  a throw-away directory and (by default) a throw-away CA, so LDAPS is exercised.

Both take users (name -> password) and groups (group -> [user names]) and return a handle with
`.stop()`; both bind only to 127.0.0.1. Passwords given to them should be generated at run time.
"""
