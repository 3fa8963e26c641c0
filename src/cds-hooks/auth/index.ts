/** CDS client authentication: the public surface the CDS Hooks service uses. */
export { ALLOWED_ALGS, AuthConfigSchema, ClientConfigSchema, fhirServerAllowed, parseAuthConfig, parseClientConfig } from './config.ts';
export type { AllowedAlg, AuthConfig, AuthConfigInput, ClientConfig, ClientConfigInput } from './config.ts';
export { AUTH_OFF_WARNING, FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE, createClientAuthenticator } from './authenticator.ts';
export type { AuthResult, AuthenticateInput, AuthenticatedClient, AuthenticatorDeps, ClientAuthenticator, TokenClaim } from './authenticator.ts';
export { createJwksFetcher } from './jwks.ts';
export type { JwksFetcher } from './jwks.ts';
export type { AuthFailureReason } from './token.ts';
export { readClientConfigFiles } from './client-files.ts';
