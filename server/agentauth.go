package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// AgentAuthConfig wires agent authentication on the tenant plane.
type AgentAuthConfig struct {
	Tenants store.TenantStore
	Ledger  *ledger.Ledger
	Keys    *signing.Keyring
	// PublicURL is how agents reach the tenant plane: the access tokens'
	// issuer, and PublicURL + "/v1/oauth/token" the assertions' audience.
	PublicURL string
	Now       func() time.Time
	// RefusalBudget (default 60) is how many refusals a log records as
	// entries of their own at once, and again each hour; the others are
	// counted, and recorded as one summary when their window ends, after
	// RefusalWindow (default a minute) or longer (see refusalGate).
	RefusalBudget int
	RefusalWindow time.Duration
	// TokenRate is how many access tokens a second one agent may be
	// issued, and TokenBurst how many at once after a quiet spell (a token
	// bucket per agent and process; each token issued is a ledger entry).
	// Past it the endpoint answers 429 slow_down with Retry-After once the
	// assertion has verified: before its jti is written if the bucket is
	// empty already, else spending a token once the jti was new. The
	// refusal is recorded as others are. Zero takes DefaultAgentTokenRate and
	// DefaultAgentTokenBurst; rate.Inf lifts the bound.
	TokenRate  rate.Limit
	TokenBurst int
	// ReadRate is how many reads a second one agent may make, and
	// ReadBurst how many at once after a quiet spell (a token bucket per
	// agent and process): of its decisions, cases and their proofs
	// (GET /v1/decisions/{id}, its tlog-proof, GET /v1/cases/{id}, a long
	// poll counting once) and of its organization's log head. Each is a
	// store read, a proof a tree's worth of them. Past it the route answers
	// 429 problem+json with Retry-After once the access token has
	// verified, before anything else is read. Zero takes
	// DefaultAgentReadRate and DefaultAgentReadBurst; rate.Inf lifts the
	// bound.
	ReadRate  rate.Limit
	ReadBurst int
	Logger    *slog.Logger // default: discard
}

// Defaults of AgentAuthConfig's token bound: a token lasts 5 minutes, so
// an agent's process needs about one each 5 minutes; 20 at once lets a
// fleet of its replicas start together.
const (
	DefaultAgentTokenRate  = rate.Limit(1.0 / 6) // 10 a minute
	DefaultAgentTokenBurst = 20
)

// Defaults of AgentAuthConfig's read bound: three reads (the decision,
// its proof and its receipt's) for each decision the default decision
// bound allows, at once and after.
const (
	DefaultAgentReadRate  = 3 * DefaultAgentDecisionRate
	DefaultAgentReadBurst = 3 * DefaultAgentDecisionBurst
)

// AgentAuth issues access tokens to agents (RFC 7523 private_key_jwt) and
// checks them on agent routes. Each organization signs its agents' tokens
// with its own key, so a token verifies only under the organization it names.
type AgentAuth struct {
	cfg           AgentAuthConfig
	issuers       sync.Map // tenant id → *identity.TokenIssuer
	verifiers     sync.Map // tenant id → *tokenKeys
	refusals      *refusalGate
	recordRefusal recordRefusal
	tokens        *agentLimiter // nil: no bound
	reads         *agentLimiter // nil: no bound
	agentKeys     agentKeyStates
	keyLog        *identity.KeyLog
	reported      sync.Map // agentKeyReport → struct{}: stored keys already reported as verifying nothing
	// afterJTI, when set, runs between a token request's jti write and
	// its take from the agent's bucket (tests).
	afterJTI func()
}

// agentKeyReport is a stored key reported once a process, for one reason.
type agentKeyReport struct {
	agentKeyRef
	why string
}

// agentKeyReread is how long this process trusts what it read of an agent
// key's status: a rotation, made by any process, refuses the access tokens
// issued under the key it retired within that long.
const agentKeyReread = time.Second

// agentKeyStates is what this process last read of the agent keys access
// tokens were issued under. The keys named are those of verified tokens,
// so at most the keys ever registered; entries older than agentKeyReread
// are dropped when the map has doubled.
type agentKeyStates struct {
	mu      sync.Mutex
	states  map[agentKeyRef]agentKeyState
	sweepAt int
}

type agentKeyRef struct{ tenant, agent, kid string }

type agentKeyState struct {
	active bool
	readAt time.Time
}

// tokenKeysReread is how often the token key of an organization this
// process knows none of may be read again: one another replica makes is
// found within about that long, and tokens naming such an organization
// cost at most one read an organization per period.
const tokenKeysReread = time.Second

// tokenKeys is what this process knows of one organization's token keys.
type tokenKeys struct {
	verifier atomic.Pointer[identity.TokenVerifier] // nil: no key known
	mu       sync.Mutex                             // orders the changes of verifier, and guards readAt and readErr
	readAt   time.Time                              // of the last read from the store, failed or not; zero: never
	readErr  error                                  // of that read
}

// NewAgentAuth returns the agent authenticator.
func NewAgentAuth(cfg AgentAuthConfig) (*AgentAuth, error) {
	if cfg.Tenants == nil || cfg.Ledger == nil || cfg.Keys == nil {
		return nil, errors.New("server: agent auth needs Tenants, Ledger and Keys")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("server: agent auth needs an http(s) PublicURL")
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefusalBudget < 0 || cfg.RefusalWindow < 0 || cfg.TokenBurst < 0 || cfg.ReadBurst < 0 {
		return nil, errors.New("server: agent auth's refusal, token and read bounds cannot be negative")
	}
	if cfg.TokenRate < 0 || math.IsNaN(float64(cfg.TokenRate)) || cfg.TokenBurst > MaxAgentBurst {
		return nil, fmt.Errorf("server: agent auth's token rate must be positive (rate.Inf for no bound), and its burst at most %d", MaxAgentBurst)
	}
	if cfg.ReadRate < 0 || math.IsNaN(float64(cfg.ReadRate)) || cfg.ReadBurst > MaxAgentBurst {
		return nil, fmt.Errorf("server: agent auth's read rate must be positive (rate.Inf for no bound), and its burst at most %d", MaxAgentBurst)
	}
	setDefault(&cfg.TokenRate, DefaultAgentTokenRate)
	setDefault(&cfg.TokenBurst, DefaultAgentTokenBurst)
	setDefault(&cfg.ReadRate, DefaultAgentReadRate)
	setDefault(&cfg.ReadBurst, DefaultAgentReadBurst)
	if cfg.RefusalBudget == 0 {
		cfg.RefusalBudget = defaultRefusalBudget
	}
	if cfg.RefusalWindow == 0 {
		cfg.RefusalWindow = defaultRefusalWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	keyLog, err := identity.NewKeyLog(cfg.Ledger)
	if err != nil {
		return nil, err
	}
	a := &AgentAuth{cfg: cfg, keyLog: keyLog}
	if cfg.TokenRate != rate.Inf {
		a.tokens = newAgentLimiter("token requests", cfg.TokenRate, cfg.TokenBurst, cfg.Now, cfg.Logger)
	}
	if cfg.ReadRate != rate.Inf {
		a.reads = newAgentLimiter("reads", cfg.ReadRate, cfg.ReadBurst, cfg.Now, cfg.Logger)
	}
	a.refusals = newRefusalGate(cfg.RefusalBudget, cfg.RefusalWindow, cfg.Now, cfg.Logger, func(ctx context.Context, lg ledger.Log, rec []byte) error {
		// The subject is the endpoint: a summary is about many claimed agents.
		_, err := cfg.Ledger.Append(ctx, lg, ledger.Entry{Kind: kindTokenRefusalsSuppressed, Subject: "token_endpoint", Record: rec})
		return err
	})
	a.recordRefusal = a.refusals.bound(a.appendRefusal)
	return a, nil
}

// Close records the refusals counted but not yet summarized (see
// AgentAuthConfig.RefusalBudget). Call it after the planes have
// stopped serving and before the ledger closes.
func (a *AgentAuth) Close(ctx context.Context) error {
	for _, l := range []*agentLimiter{a.tokens, a.reads} {
		if l != nil {
			l.close() // logs the refusals counted and not yet logged
		}
	}
	return a.refusals.close(ctx)
}

// TokenEndpoint is the URL agents put in their assertions' aud.
func (a *AgentAuth) TokenEndpoint() string { return a.cfg.PublicURL + tokenPath }

// Agent is the authenticated caller of an agent route.
type Agent struct {
	ID     string
	Tenant store.TenantRef
	// kid and expiry are the access token's agent key and end: what
	// AgentAuth.still checks again during a long poll.
	kid    string
	expiry time.Time
}

type agentKey struct{}

// AgentFrom returns the agent Require authenticated.
func AgentFrom(c *fiber.Ctx) (Agent, bool) {
	a, ok := c.Locals(agentKey{}).(Agent)
	return a, ok
}

// MountTokenEndpoint adds POST /v1/oauth/token to the tenant plane.
func (a *AgentAuth) MountTokenEndpoint(p *Plane) {
	p.app.Post(tokenPath, a.token)
	p.boundary.oauthPaths = append(p.boundary.oauthPaths, tokenPath)
}

// tokenPath is the token endpoint's path on the tenant plane.
const tokenPath = "/v1/oauth/token"

// Kinds of the ledger entries the token endpoint appends.
const (
	kindTokenIssued  = "auth.token_issued"  // subject: the agent
	kindTokenRefused = "auth.token_refused" // subject: the agent the assertion claimed, or what stood for it
	// kindTokenRefusalsSuppressed counts the refusals past a log's bound.
	kindTokenRefusalsSuppressed = "auth.token_refusals_suppressed"
)

// oauthError answers RFC 6749 §5.2 (not problem+json: OAuth clients expect
// this shape). Every error is a 400, invalid_client included (but for an
// agent past its token bound: slowDown's 429). §5.2 lets a
// server answer invalid_client with 401 to name the HTTP authentication
// schemes it supports, and requires 401 with that scheme's challenge when
// the client authenticated through the Authorization header (a 401 must
// carry WWW-Authenticate, RFC 9110 §15.5.2). Agents authenticate with a
// client assertion in the body (private_key_jwt, RFC 7523 §2.2), which no
// HTTP scheme names, and this endpoint supports no Authorization-header
// scheme (a request sending one is refused as invalid_request, 400), so
// there is no challenge to send; invalid_client is no Bearer error code
// (RFC 6750 §3.1).
func oauthError(c *fiber.Ctx, code, description string) error {
	return writeOAuthError(c, fiber.StatusBadRequest, code, description)
}

// writeOAuthError answers an RFC 6749 §5.2 error: JSON with error and
// error_description, with status, for this client only (§5.1). The token
// endpoint's refusals and the boundary's there are written by it.
func writeOAuthError(c *fiber.Ctx, status int, code, description string) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
	return c.Status(status).JSON(fiber.Map{"error": code, "error_description": description})
}

// Challenges of agent routes' 401s (RFC 6750 §3): a request without a
// token is told the scheme; one whose token does not authenticate is told
// the token is the problem.
const (
	challengeBearer       = "Bearer"
	challengeInvalidToken = `Bearer error="invalid_token"`
	// challengeInsufficient: a valid token that does not reach the
	// resource (RFC 6750 §3.1).
	challengeInsufficient = `Bearer error="insufficient_scope"`
)

// invalidToken refuses a request whose bearer token does not authenticate.
func invalidToken(c *fiber.Ctx) error {
	c.Set(fiber.HeaderWWWAuthenticate, challengeInvalidToken)
	return Problem(ErrUnauthorized, "The access token is invalid or expired.")
}

const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// token implements the client-credentials grant with a private_key_jwt
// client assertion. Every issue and every refusal is in a ledger, in the
// organization's log when the agent is known, else in the platform's: as
// an entry of its own, or, past a log's bound, counted in a summary.
//
// The assertion's own checks (shape, alg, typ, aud, times, iss = sub =
// client_id if sent, jti) run before anything is read: the agent and its keys are read only
// for an assertion that passed them (in Lookup). Every refusal before the
// signature has verified under the agent's key reads the same to the
// client, whether the agent exists or not (its timing does not: see
// identity's assertionRefused); the ledger names the reason.
func (a *AgentAuth) token(c *fiber.Ctx) error {
	// Every answer, a token or a refusal, is for this client only (RFC 6749
	// §5.1; Pragma for HTTP/1.0 caches).
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
	ctx := c.UserContext()
	// A request refused for its form is recorded too, in the organization
	// of the agent its assertion names, if any (unverified: only where the
	// refusal is filed), else in the platform's log: so are those refused
	// before the form is read (its content type, a malformed form). If the
	// directory cannot say, the answer is the outage: nothing that reaches
	// this handler goes unrecorded. What the boundary refuses before any
	// handler runs, a compressed body (415), one over the body limit
	// (413), or a repeated or trailing Authorization header (400,
	// refuseRequestHeaders), is never read, so names no agent: it is in the
	// request log only.
	var assertion string
	refuse := func(answer error, reason string) error {
		ref, claimed, err := a.claimedOrganization(ctx, assertion)
		if err != nil {
			return err
		}
		a.refused(ctx, ref, claimed, reason)
		return answer
	}
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationForm {
		return refuse(Problem(ErrUnsupportedMediaType, "The token endpoint takes application/x-www-form-urlencoded."), "unsupported_media_type")
	}
	form, err := url.ParseQuery(string(c.Body()))
	if err != nil {
		return refuse(oauthError(c, "invalid_request", "the form is malformed"), "malformed_form")
	}
	if v := form["client_assertion"]; len(v) > 0 {
		assertion = v[0]
	}
	if c.Get(fiber.HeaderAuthorization) != "" {
		// No Authorization-header scheme is supported here, and a client
		// must not use two methods at once (RFC 6749 §2.3).
		return refuse(oauthError(c, "invalid_request", "authenticate with a client assertion only, not the Authorization header"), "authorization_header")
	}
	// RFC 6749 §3.2: no parameter more than once, one sent without a value
	// is as if omitted, and unrecognized ones are ignored, repeats
	// included (a client's library may add RFC 8707's resource, which may
	// be repeated). A client secret is recognized: a second authentication
	// method, refused (§2.3).
	for _, k := range []string{"grant_type", "client_assertion_type", "client_assertion", "client_id", "scope", "client_secret"} {
		if len(form[k]) > 1 {
			return refuse(oauthError(c, "invalid_request", "repeated parameter"), "repeated_parameter")
		}
	}
	if form.Get("client_secret") != "" {
		return refuse(oauthError(c, "invalid_request", "authenticate with a client assertion only, not a client secret"), "client_secret")
	}
	switch form.Get("grant_type") {
	case grantClientCredentials:
	case "":
		return refuse(oauthError(c, "invalid_request", "grant_type is required"), "no_grant_type")
	default:
		return refuse(oauthError(c, "unsupported_grant_type", "only client_credentials is supported"), "unsupported_grant_type")
	}
	if form.Get("client_assertion_type") != assertionTypeJWTBearer || assertion == "" {
		return refuse(oauthError(c, identity.OAuthInvalidClient, "a jwt-bearer client assertion is required"), "no_client_assertion")
	}
	// client_id is optional; sent, it must name the assertion's agent (RFC
	// 7521 §4.2), which VerifyClientAssertion checks with the claims.
	clientID := form.Get("client_id")
	now := a.cfg.Now()

	// ref is the claimed agent's organization, once Lookup has found it:
	// the directory names it from the agent id, only a routing hint until
	// the signature verifies under that agent's key.
	var (
		ref    *store.TenantRef
		looked bool
	)
	claims, err := identity.VerifyClientAssertion(assertion, identity.AssertionOptions{
		Audience: a.TokenEndpoint(), Now: now, ClientID: clientID,
		Lookup: func(agentID, _ string) (identity.AgentInfo, error) {
			looked = true
			r, info, err := a.lookupAgent(ctx, agentID)
			if r.ID != "" {
				ref = &r
			}
			return info, err
		},
	})
	if err == nil && a.tokens != nil {
		// An agent already past its bound is told so before its jti is
		// written: its requests cost no write, and the assertion stays
		// good for when it may ask again. Nothing is spent here. A replay
		// is still named one (a read, no write): a leaked assertion
		// replayed while its agent is over its bound would otherwise be
		// recorded as rate_limited (found by review).
		if wait := a.tokens.check(agentRef{tenant: ref.ID, agent: claims.AgentID}); wait > 0 {
			var used bool
			err = a.cfg.Tenants.InTenantReadTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				used, err = tx.AssertionJTIs().Used(ctx, claims.AgentID, claims.JTISHA256, claims.Expiry)
				return err
			})
			switch {
			case err != nil:
				return err
			case !used:
				return a.slowDown(c, ref, claims.AgentID, wait)
			}
			err = identity.ErrReplay
		}
	}
	if err == nil {
		err = a.cfg.Tenants.InTenantTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
			err := tx.AssertionJTIs().Remember(ctx, claims.AgentID, claims.JTISHA256, claims.Expiry)
			if errors.Is(err, store.ErrConflict) {
				return identity.ErrReplay
			}
			return err
		})
	}
	if err == nil && !a.cfg.Now().Before(claims.Expiry) {
		// The assertion expired while its jti was being written (a write
		// that waited): the sweeper may have pruned the row of its first
		// use by then, so the write proves nothing against a replay.
		err = identity.ErrAssertionExpired
	}
	if err == nil && a.afterJTI != nil {
		a.afterJTI()
	}
	if err == nil && a.tokens != nil {
		// Spent once the assertion is the agent's own and its jti new: no
		// one else, not even with a copy of a used assertion, can spend
		// the agent's bucket. Its jti is spent by then: the client signs
		// a new assertion when told to retry, as it does for every request.
		if wait := a.tokens.take(agentRef{tenant: ref.ID, agent: claims.AgentID}); wait > 0 {
			return a.slowDown(c, ref, claims.AgentID, wait)
		}
	}
	if err != nil {
		code, desc := identity.OAuthError(err)
		if code == identity.OAuthServerError {
			return err
		}
		if !looked {
			// Refused on the assertion alone: the directory is read only
			// now, to file the refusal in the claimed agent's organization.
			return refuse(oauthError(c, code, desc), reasonOf(err))
		}
		a.refused(ctx, ref, peekSubject(assertion), reasonOf(err))
		return oauthError(c, code, desc)
	}
	issuer, err := a.issuer(ctx, ref.ID)
	if err != nil {
		return err
	}
	token, exp, err := issuer.Issue(claims.AgentID, claims.KeyID, ref.ID, now)
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(map[string]any{
		"event": "token_issued", "agent_id": claims.AgentID, "key_id": claims.KeyID,
		"assertion_jti_sha256": claims.JTISHA256, "expires_at": exp.UTC().Format(time.RFC3339), "request_id": RequestID(c),
	})
	if _, err := a.cfg.Ledger.Append(ctx, a.cfg.Ledger.TenantLog(ref.ID, ref.Slug), ledger.Entry{Kind: kindTokenIssued, Subject: claims.AgentID, Record: rec}); err != nil {
		return err
	}
	// The lifetime issued (RFC 6749 §5.1), on the clock that set exp: exp
	// counts from now truncated to the second, so the seconds are rounded up.
	return c.JSON(fiber.Map{"access_token": token, "token_type": "Bearer", "expires_in": int((exp.Sub(now) + time.Second - 1) / time.Second)})
}

// slowDown refuses an agent past its token bound (429), and records the
// refusal as the others are.
func (a *AgentAuth) slowDown(c *fiber.Ctx, ref *store.TenantRef, agentID string, wait time.Duration) error {
	a.refused(c.UserContext(), ref, agentID, "rate_limited")
	setRetryAfter(c, wait)
	// slow_down: the OAuth error of a client asking the token endpoint
	// too often (RFC 8628 §3.5, registered for the token endpoint).
	return writeOAuthError(c, fiber.StatusTooManyRequests, "slow_down",
		"this agent asks for access tokens faster than this service allows; retry after the number of seconds in Retry-After")
}

// claimedOrganization is the active organization of the agent an
// unverified assertion names (nil when none), and that name: where a
// refusal is filed.
func (a *AgentAuth) claimedOrganization(ctx context.Context, assertion string) (*store.TenantRef, string, error) {
	claimed := peekSubject(assertion)
	if claimed == "" {
		return nil, "", nil
	}
	r, err := a.resolveAgent(ctx, claimed)
	if err != nil || r.ID == "" {
		return nil, claimed, err
	}
	return &r, claimed, nil
}

// resolveAgent returns the active organization agentID was registered in,
// or a zero TenantRef when there is none (unknown agent, malformed id,
// organization not active). Other errors are outages.
func (a *AgentAuth) resolveAgent(ctx context.Context, agentID string) (store.TenantRef, error) {
	ref, err := a.cfg.Tenants.ResolveAgent(ctx, agentID)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return store.TenantRef{}, nil
	case err != nil:
		return store.TenantRef{}, err
	case ref.Status != store.TenantActive:
		return store.TenantRef{}, nil
	}
	return ref, nil
}

// lookupAgent reads the agent and its active keys for
// VerifyClientAssertion, and the organization it belongs to (zero when
// the agent is unknown there). A key the organization's log does not
// record (identity.KeyLog) verifies nothing.
func (a *AgentAuth) lookupAgent(ctx context.Context, agentID string) (store.TenantRef, identity.AgentInfo, error) {
	ref, err := a.resolveAgent(ctx, agentID)
	if err != nil || ref.ID == "" {
		if err == nil {
			err = identity.ErrUnknownAgent
		}
		return ref, identity.AgentInfo{}, err
	}
	var (
		ag   store.Agent
		keys []store.AgentKey
	)
	err = a.cfg.Tenants.InTenantReadTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
		if ag, err = tx.Agents().Get(ctx, agentID); err != nil {
			return err
		}
		keys, err = tx.Agents().Keys(ctx, agentID)
		return err
	})
	if err != nil {
		// store.ErrNotFound: the directory names an organization that does
		// not have the agent; VerifyClientAssertion treats it as unknown.
		return ref, identity.AgentInfo{}, err
	}
	info := identity.AgentInfo{ID: ag.ID, Status: string(ag.Status)}
	for _, k := range keys {
		if k.Status != store.KeyActive {
			continue
		}
		// Proven outside the read transaction: the proof reads the log in
		// a transaction of its own.
		if err := a.keyLog.Check(ctx, ref, k); errors.Is(err, identity.ErrKeyNotLogged) {
			// Written behind the service's back (or stored before keys
			// were logged, and not adopted since): it verifies nothing,
			// and the agent's other keys still do. Reported once a key
			// and process: anyone may name the agent in an assertion.
			if a.firstReport(ref.ID, ag.ID, k.KID, "not logged") {
				a.cfg.Logger.ErrorContext(ctx, "agent auth: a stored agent key is not one the organization's log records, so was written behind the service's back or, naming no entry, not adopted; it verifies nothing",
					slog.String("tenant", ref.Slug), slog.String("agent", ag.ID), slog.String("kid", k.KID), slog.Any("reason", err))
			}
			continue
		} else if err != nil {
			return ref, identity.AgentInfo{}, err
		}
		jk, err := identity.ParseAgentJWK([]byte(k.PublicJWK))
		if err != nil {
			// Stored before a rule refused it (an Ed25519 point of small
			// order): it verifies nothing, and the agent's other keys
			// still do. An assertion naming it is refused as one under an
			// unknown key.
			if a.firstReport(ref.ID, ag.ID, k.KID, "refused") {
				a.cfg.Logger.WarnContext(ctx, "agent auth: a stored agent key is no longer accepted; it verifies nothing",
					slog.String("agent", ag.ID), slog.String("kid", k.KID), slog.Any("reason", err))
			}
			continue
		}
		info.Keys = append(info.Keys, jk)
	}
	return ref, info, nil
}

// firstReport says whether this is the first report of the stored key for
// why: anyone may name an agent in an assertion, as often as they like.
func (a *AgentAuth) firstReport(tenant, agent, kid, why string) bool {
	_, seen := a.reported.LoadOrStore(agentKeyReport{agentKeyRef{tenant: tenant, agent: agent, kid: kid}, why}, struct{}{})
	return !seen
}

// refused records a refusal in the organization's log, or the platform's
// when no organization could be named. A failure to record it is logged;
// the client's answer does not change.
func (a *AgentAuth) refused(ctx context.Context, ref *store.TenantRef, claimed, reason string) {
	r := refusal{log: a.cfg.Ledger.PlatformLog(), claimed: cutUTF8(claimed, 64), reason: reason}
	if ref != nil {
		r.key, r.log = ref.ID, a.cfg.Ledger.TenantLog(ref.ID, ref.Slug)
	}
	if err := a.recordRefusal(ctx, r); err != nil {
		a.cfg.Logger.Error("token refusal's entry may not be recorded; counted for its log's summary", slog.String("log", r.logName()),
			slog.String("reason", reason), slog.Any("error", err))
	}
}

// appendRefusal writes a refusal as an entry of its own.
func (a *AgentAuth) appendRefusal(ctx context.Context, r refusal) error {
	rec, _ := json.Marshal(map[string]string{"event": "token_refused", "claimed_agent": r.claimed, "reason": r.reason})
	_, err := a.cfg.Ledger.Append(ctx, r.log, ledger.Entry{Kind: kindTokenRefused, Subject: r.claimed, Record: rec})
	return err
}

// reasonOf names a refusal for the ledger (never the assertion itself).
// The client is told only "client authentication failed" (see
// identity.OAuthError), but for a replayed jti, which it learns only once
// its signature verified: this name is all the organization's auditors
// learn, so every assertion error has one of its own.
func reasonOf(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{identity.ErrReplay, "replayed_jti"}, {identity.ErrUnknownAgent, "unknown_agent"}, {identity.ErrAgentNotActive, "agent_not_active"},
		{identity.ErrUnknownKey, "unknown_key"}, {identity.ErrAssertionSignature, "bad_signature"}, {identity.ErrAssertionAlgorithm, "bad_algorithm"},
		{identity.ErrAssertionType, "bad_type"}, {identity.ErrAssertionMalformed, "malformed"},
		{identity.ErrAssertionAudience, "wrong_audience"}, {identity.ErrAssertionExpired, "expired"}, {identity.ErrAssertionLifetime, "lifetime_too_long"},
		{identity.ErrAssertionNotYetValid, "not_yet_valid"},
		{identity.ErrAssertionSubject, "iss_sub_mismatch"}, {identity.ErrAssertionClientID, "client_id_mismatch"}, {identity.ErrAssertionJTI, "bad_jti"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "invalid_assertion"
}

// tokenKeyTimeout bounds reading or creating an organization's token key.
const tokenKeyTimeout = 10 * time.Second

// issuer returns the organization's token issuer (its key, created on
// first use). Only the token endpoint calls it, for an agent whose
// assertion verified: nothing else may create a key.
//
// First requests at the same moment (here or on other replicas) may each
// try to create the key; the store keeps one active token key an
// organization, and the losers take the winner's (signing.TokenKey).
func (a *AgentAuth) issuer(ctx context.Context, tenantID string) (*identity.TokenIssuer, error) {
	if v, ok := a.issuers.Load(tenantID); ok {
		return v.(*identity.TokenIssuer), nil
	}
	// ctx is the request's user context (context.Background under fiber
	// today), so the key's read or creation is bounded below: on
	// PostgreSQL a creation waits for a concurrent one's transaction.
	var tk signing.TokenKey
	tctx, cancel := context.WithTimeout(ctx, tokenKeyTimeout)
	defer cancel()
	err := a.cfg.Tenants.InTenantTx(tctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		tk, err = a.cfg.Keys.TokenKey(ctx, tx.Keys(), tenantID)
		return err
	})
	if err != nil {
		return nil, err
	}
	ti, err := identity.NewTokenIssuer(tk.Signer(), tk.KID, a.cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	// The tokens this process signs verify here without a read.
	if err := a.knowTokenKey(tenantID, ti.KID(), ti.PublicKey()); err != nil {
		return nil, err
	}
	v, _ := a.issuers.LoadOrStore(tenantID, ti)
	return v.(*identity.TokenIssuer), nil
}

func (a *AgentAuth) tokenKeysOf(tenantID string) *tokenKeys {
	if v, ok := a.verifiers.Load(tenantID); ok {
		return v.(*tokenKeys) // every agent request: no allocation
	}
	v, _ := a.verifiers.LoadOrStore(tenantID, &tokenKeys{})
	return v.(*tokenKeys)
}

// knowTokenKey makes the key this process issues with the organization's
// verifier, unless it has one: the store keeps one active token key, so a
// verifier read from it holds this same key.
func (a *AgentAuth) knowTokenKey(tenantID, kid string, pub ed25519.PublicKey) error {
	tk := a.tokenKeysOf(tenantID)
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.verifier.Load() != nil {
		return nil
	}
	v, err := identity.NewTokenVerifier(map[string]ed25519.PublicKey{kid: pub}, a.cfg.PublicURL)
	if err != nil {
		return err
	}
	tk.verifier.Store(v)
	return nil
}

// verifier returns the organization's token verifier, or nil when it has
// no token key: then no token of it can be valid. It only reads: a
// request that presents a token never creates a key. The key is read
// once and kept; while the organization has none (or the read failed),
// it is read again at most once per tokenKeysReread.
func (a *AgentAuth) verifier(ctx context.Context, tenantID string) (*identity.TokenVerifier, error) {
	tk := a.tokenKeysOf(tenantID)
	if v := tk.verifier.Load(); v != nil {
		return v, nil
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if v := tk.verifier.Load(); v != nil {
		return v, nil // read meanwhile
	}
	now := a.cfg.Now()
	if since := now.Sub(tk.readAt); !tk.readAt.IsZero() && since >= 0 && since < tokenKeysReread {
		// No key known because the read failed: an outage, not a token
		// that cannot be valid. nil, nil: the organization had none.
		return nil, tk.readErr
	}
	// Before the read: while the store fails, tokens of the organization
	// still cost at most one read a period.
	tk.readAt = now
	var keys map[string]ed25519.PublicKey
	err := a.cfg.Tenants.InTenantReadTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		keys, err = a.cfg.Keys.TokenPublicKeys(ctx, tx.Keys(), tenantID)
		return err
	})
	tk.readErr = err
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	v, err := identity.NewTokenVerifier(keys, a.cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	tk.verifier.Store(v)
	return v, nil
}

// Require authenticates an agent route: a Bearer access token issued by
// this plane, verified under the key of the organization it names. Nothing
// the client sends besides the token (X-Tenant, X-Forwarded-*, a path)
// changes which organization that is.
func (a *AgentAuth) Require(c *fiber.Ctx) error {
	ag, err := a.authenticate(c)
	if err != nil {
		return err
	}
	c.Locals(agentKey{}, ag)
	err = c.Next()
	if errors.Is(err, ErrUnauthorized) {
		// The route refused the token's agent (gone since the token was
		// issued): the token is what no longer authenticates.
		c.Set(fiber.HeaderWWWAuthenticate, challengeInvalidToken)
	}
	return err
}

// authenticate is the agent a request's Bearer access token names: issued
// by this plane, verified under the key of the organization it names, its
// agent key still the agent's. A refusal sets the WWW-Authenticate
// challenge.
func (a *AgentAuth) authenticate(c *fiber.Ctx) (Agent, error) {
	auth := c.Get(fiber.HeaderAuthorization)
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		c.Set(fiber.HeaderWWWAuthenticate, challengeBearer)
		return Agent{}, Problem(ErrUnauthorized, "An agent access token is required (Authorization: Bearer).")
	}
	tenantID := peekTenant(token)
	if store.CheckTenantID(tenantID) != nil {
		return Agent{}, invalidToken(c)
	}
	ref, err := a.cfg.Tenants.ResolveTenantID(c.UserContext(), tenantID)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return Agent{}, invalidToken(c)
	case err != nil:
		// An outage, not a token that cannot be valid: a client told 401
		// would only ask for another token.
		return Agent{}, err
	case ref.Status != store.TenantActive:
		return Agent{}, invalidToken(c)
	}
	v, err := a.verifier(c.UserContext(), ref.ID)
	if err != nil {
		return Agent{}, err
	}
	if v == nil {
		return Agent{}, invalidToken(c)
	}
	claims, err := v.Verify(token, a.cfg.Now())
	if err != nil || claims.Tenant != ref.ID {
		return Agent{}, invalidToken(c)
	}
	// A token is good only while the agent key it was issued under is
	// the agent's: a rotation ends the tokens of the key it retires.
	active, err := a.agentKeyActive(c.UserContext(), agentKeyRef{tenant: ref.ID, agent: claims.Subject, kid: claims.AgentKeyID})
	if err != nil {
		return Agent{}, err
	}
	if !active {
		return Agent{}, invalidToken(c)
	}
	return Agent{ID: claims.Subject, Tenant: ref, kid: claims.AgentKeyID, expiry: claims.Expiry}, nil
}

// LogAccess lets an agent read its organization's log for its own
// entries (DESIGN §4). It reads the log's head (ReadHead): the newest
// checkpoint, and consistency proofs between signed sizes, so that it can
// hold the checkpoints its decisions came with to one append-only log;
// their sizes tell when the organization's batches were signed. It reads
// its own entries one at a time (ReadEntry): an entry, or its inclusion
// proof, by index or leaf hash, where the entry is one of agentOwnsEntry's;
// another is 403. What shows many entries at once (tiles, exports) is for
// the organization's auditors and admins, whom a later identity plane
// authenticates: an agent's token gets 403 there. No token, an invalid
// one, or a suspended or revoked agent's gets 401 on every route, as on
// the agent's other routes. Every request whose token verifies spends one
// of the agent's reads (AgentAuthConfig.ReadRate) before anything else is
// read: past its bound the answer is 429, whatever the route would have
// answered, a suspended agent's 401 included.
func (a *AgentAuth) LogAccess(c *fiber.Ctx, what LogRead) (LogGrant, error) {
	ag, err := a.authenticate(c)
	if err != nil {
		return LogGrant{}, err
	}
	if a.reads != nil {
		if err := a.reads.admitAgent(c, ag, readsRefused); err != nil {
			return LogGrant{}, err
		}
	}
	err = a.cfg.Tenants.InTenantReadTx(c.UserContext(), ag.Tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		return decision.CheckActive(ctx, tx, ag.ID)
	})
	switch {
	case errors.Is(err, decision.ErrUnknownAgent):
		return LogGrant{}, invalidToken(c)
	case err != nil:
		return LogGrant{}, err
	}
	g := LogGrant{Log: a.cfg.Ledger.TenantLog(ag.Tenant.ID, ag.Tenant.Slug)}
	switch what {
	case ReadHead:
	case ReadEntry:
		g.Entry = func(c *fiber.Ctx, e verify.Entry, record []byte) error {
			if agentOwnsEntry(ag.ID, e, record) {
				return nil
			}
			c.Set(fiber.HeaderWWWAuthenticate, challengeInsufficient)
			return Problem(ErrForbidden, "An agent reads its own entries only.")
		}
	default:
		c.Set(fiber.HeaderWWWAuthenticate, challengeInsufficient)
		return LogGrant{}, Problem(ErrForbidden, "An agent reads its organization's checkpoint and consistency proofs, and its own entries one at a time (/v1/ledger/entries/{index}, /v1/ledger/proofs/inclusion, /v1/decisions/{id}/tlog-proof).")
	}
	return g, nil
}

// agentOwnsEntry says whether an entry is one of the agent's own: its
// decisions, their receipts and cases (the agent their records name), and
// the entries of its identity (registered, key rotated, suspended,
// adopted) and of the access tokens issued to it (the entry's subject).
// Every other entry is not: a token refusal names the agent its assertion
// claimed, whoever sent it, and a kind added later stays closed until it
// is named here.
func agentOwnsEntry(agentID string, e verify.Entry, record []byte) bool {
	switch e.Kind {
	case identity.KindAgentRegistered, identity.KindAgentKeyRotated, identity.KindAgentSuspended, identity.KindAgentAdopted,
		kindTokenIssued:
		return e.Subject == agentID
	case decision.KindDecision, decision.KindReceipt, decision.KindCaseOpened, decision.KindCaseExpired:
		named, ok := decision.RecordAgent(e.Kind, record)
		return ok && named == agentID
	}
	return false
}

// readRoute is what an agent's GET route runs before its handler:
// Require, then the read bound (AgentAuthConfig.ReadRate), if any.
func (a *AgentAuth) readRoute(handler fiber.Handler) []fiber.Handler {
	if a.reads == nil {
		return []fiber.Handler{a.Require, handler}
	}
	return []fiber.Handler{a.Require, a.reads.middleware(readsRefused), handler}
}

// still is what a request Require let in asks while it waits (a long poll
// of a case): ErrUnauthorized once the token it came with would be refused
// (expired, or its agent key retired, as read at most agentKeyReread ago).
func (a *AgentAuth) still(ag Agent) func(context.Context) error {
	return func(ctx context.Context) error {
		if !a.cfg.Now().Before(ag.expiry) {
			return errTokenEnded
		}
		active, err := a.agentKeyActive(ctx, agentKeyRef{tenant: ag.Tenant.ID, agent: ag.ID, kid: ag.kid})
		switch {
		case err != nil:
			return err
		case !active:
			return errTokenEnded
		}
		return nil
	}
}

// errTokenEnded: a request's access token ended while it was served.
var errTokenEnded = Problem(ErrUnauthorized, "The access token is invalid or expired.")

// agentKeyActive reports whether key is one of its agent's active keys,
// as read from the store at most agentKeyReread ago. An agent or key the
// store does not have is not active; a failed read is the error.
func (a *AgentAuth) agentKeyActive(ctx context.Context, key agentKeyRef) (bool, error) {
	now := a.cfg.Now()
	ks := &a.agentKeys
	ks.mu.Lock()
	st, ok := ks.states[key]
	ks.mu.Unlock()
	if ok && now.Sub(st.readAt) < agentKeyReread && !now.Before(st.readAt) {
		return st.active, nil
	}
	active := false
	err := a.cfg.Tenants.InTenantReadTx(ctx, key.tenant, func(ctx context.Context, tx store.TenantTx) error {
		keys, err := tx.Agents().Keys(ctx, key.agent)
		for _, k := range keys {
			active = active || k.KID == key.kid && k.Status == store.KeyActive
		}
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		active, err = false, nil
	case err != nil:
		return false, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.states == nil {
		ks.states, ks.sweepAt = map[agentKeyRef]agentKeyState{}, minAgentSweep
	}
	if _, known := ks.states[key]; !known && len(ks.states) >= ks.sweepAt {
		for k, st := range ks.states {
			if now.Sub(st.readAt) >= agentKeyReread {
				delete(ks.states, k)
			}
		}
		ks.sweepAt = max(minAgentSweep, 2*len(ks.states))
	}
	ks.states[key] = agentKeyState{active: active, readAt: now}
	return active, nil
}

// peekSubject and peekTenant read one claim of a compact JWS without
// verifying it: only to pick the key that will verify it. peekSubject
// also picks the organization an assertion's refusal is filed in, so it
// reads nothing from a payload the verifier will refuse as read two ways
// (a duplicate name, a name that folds to sub): what it reads must be
// what the verifier reads, or nothing (found by review: {"sub":A,
// "sub":B}, signed by A's key, was filed in B's organization).
// peekTenant, on every agent request, only picks the organization whose
// token key verifies an access token, and that verifier refuses such a
// payload: a wrong pick is a refusal too, so it reads without the check
// (a third of the time: 2.8 µs, not 8).
func peekSubject(jws string) string { sub, _ := peekClaims(jws, true); return sub }
func peekTenant(jws string) string  { _, tenant := peekClaims(jws, false); return tenant }

// peekedMembers are the claims peekClaims reads.
var peekedMembers = jose.Flat("sub", "tenant")

// peekClaims decodes only sub and tenant (into a struct, not a map). A
// payload where either is not a string gives neither; so does, when
// strict, one that jose.Check refuses for them, and then names are read
// exactly (json/v2).
func peekClaims(jws string, strict bool) (sub, tenant string) {
	_, rest, ok := strings.Cut(jws, ".")
	if !ok {
		return "", ""
	}
	payload64, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") || len(payload64) > 16<<10 {
		return "", ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(payload64)
	if err != nil {
		return "", ""
	}
	var claims struct {
		Sub    string `json:"sub"`
		Tenant string `json:"tenant"`
	}
	switch {
	case !strict:
		if json.Unmarshal(payload, &claims) != nil {
			return "", ""
		}
	case jose.Check(payload, peekedMembers) != nil || jsonv2.Unmarshal(payload, &claims) != nil:
		return "", ""
	}
	return claims.Sub, claims.Tenant
}
