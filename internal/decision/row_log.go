package decision

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// RowLog checks an organization's agents, agent keys and counterparties
// against its log (agentsigna ledger verify), as ReceiptKeyLog checks its
// receipt keys. The service trusts these rows only as far as their entries
// say (KeyLog, agentLog, counterpartyLog); this finds, for the operator,
// the rows written behind its back, which is all that can be done about
// them where the writer can go around the triggers (the embedded store's
// file):
//   - every agent stored was registered by an entry (agent.registered, or
//     agent.adopted for one stored before agents were logged), and no
//     agent the log registered is missing; its row names that entry, has
//     its name and sponsor, is no safer than the entry's tier, and is not
//     active if an entry suspended it;
//   - every agent key stored was introduced by an entry of its agent, with
//     that public key, and its row names that entry; a key is retired
//     exactly when an entry retired it (a rotation, or an adoption that
//     found it retired); no key the log introduced is missing;
//   - an agent, key or counterparty whose row names no entry fails: it
//     was stored before rows were logged and not adopted since
//     (agentsigna ledger adopt), or planted, which nothing tells apart;
//   - every counterparty stored names its counterparty.created (or
//     counterparty.adopted) entry, is verified only if that entry says so,
//     and has the name and bank details it recorded; none the log
//     recorded is missing;
//   - every policy bundle stored was uploaded by a policy.upload entry of
//     its revision, SHA-256 (which its bytes have), signed or not as the
//     entry says, and uploader (the entry its row names, when it names
//     one),
//     and no revision uploaded is missing; every bundle verification key
//     stored was registered by a policy.verification_key entry with that
//     key and algorithm (the entry its row names, when it names one), and
//     no key id registered is missing (one removed
//     behind the service's back would let unsigned bundles in). Both were
//     logged from the first build that stored them; builds before
//     2026-11-28 logged a change whose write then failed (a second add-key of an id,
//     say), so a revision or key id may have several entries, and its row,
//     when it names none, is to match one of them.
//   - every decision, receipt and case row is held to its entries
//     (decisionRows, receiptRows, caseRows).
//
// Feed it every entry in order (Entry), then the organization's rows
// (Rows).
type RowLog struct {
	agents         map[string]*loggedAgent
	agentOrder     []string
	counterparties map[string]loggedCounterparty
	cpOrder        []string
	bundles        map[string][]loggedPolicy[policyRecord] // by revision, in log order
	bundleOrder    []string
	vkeys          map[string][]loggedPolicy[verificationKeyRecord] // by kid, in log order
	vkeyOrder      []string
	// decisions and receipts count their entries: each row is held to
	// the entry it names (decisionRows, receiptRows), so as many rows as
	// entries is every entry with its row. cases are kept whole: a case's
	// row names no entry.
	decisions, receipts uint64
	cases               map[string]*loggedCase
	// paid counts, by counterparty, the payments the decision rows
	// allowed (decisionRows), for paymentRows.
	paid map[string]int
	// activations are the policy.activate and policy.rollback entries,
	// by index.
	activations map[uint64]loggedActivation
	// UnstoredDecisions is how many decisions the log holds that the
	// store does not: a decision whose rows failed to store after its
	// entries (the agent was answered with an error; record), or one
	// deleted whole, rows, receipt and case, which only its agent's
	// later tallies give away.
	UnstoredDecisions uint64
	// allowed and escalated count the decision rows of each outcome: as
	// many receipts and cases must be stored, a decision's rows being
	// stored all or none.
	allowed, escalated uint64
}

type loggedAgent struct {
	registered    *uint64 // nil: an agent from before agents were logged, not adopted
	adopted       bool    // registered is its agent.adopted entry
	firstEntry    uint64  // the first entry about it
	name, sponsor string
	tier          store.RiskTier
	suspended     *uint64 // the entry that suspended it
	keys          map[string]*loggedAgentKey
	keyOrder      []string
	// retiredUnlogged are the keys, not introduced by any entry, that a
	// rotation retired before the agent was adopted, by kid;
	// rotatedUnlisted the first rotation before then whose record lists
	// none (before d87bb85), which retired them all.
	retiredUnlogged map[string]uint64
	rotatedUnlisted *uint64
	revoked         *uint64 // the adoption that found it revoked
}

// unloggedRetired is the entry that retired kid, a key of the agent no
// entry introduced, before its adoption; nil if none did.
func (a *loggedAgent) unloggedRetired(kid string) *uint64 {
	if at, ok := a.retiredUnlogged[kid]; ok {
		return &at
	}
	return a.rotatedUnlisted
}

// rowProblem says why ag, a row of an agent the entries read registered
// (or adopted), is not the agent they say, or "": its name, sponsor, tier
// (no safer) and status. ledger verify and ledger adopt hold rows so.
func (a *loggedAgent) rowProblem(ag store.Agent) string {
	switch {
	case ag.Name != a.name || ag.Sponsor != a.sponsor:
		return fmt.Sprintf("agent %s is stored with another name or sponsor than entry %d registered", ag.ID, *a.registered)
	case riskier(ag.RiskTier, a.tier) != ag.RiskTier:
		return fmt.Sprintf("agent %s is stored %s, safer than entry %d registered it (%s)", ag.ID, ag.RiskTier, *a.registered, a.tier)
	}
	return a.statusProblem(ag.ID, ag.Status)
}

// statusProblem says why an agent row of status cannot be the agent the
// entries read say, or "".
func (a *loggedAgent) statusProblem(agentID string, status store.AgentStatus) string {
	switch {
	case a.suspended != nil && status == store.AgentActive:
		return fmt.Sprintf("agent %s is active, but entry %d suspended it", agentID, *a.suspended)
	case a.revoked != nil && status != store.AgentRevoked:
		return fmt.Sprintf("agent %s is %s, but entry %d adopted it revoked", agentID, status, *a.revoked)
	}
	return ""
}

// keyProblem says why k, a key row of the agent, is not what the entries
// read say of it, or "": the public key its introduction logged (when one
// did), retired exactly when an entry retired it (for a key none
// introduced, only while the agent is not adopted: a rotation before).
// ledger verify and ledger adopt hold key rows so.
func (a *loggedAgent) keyProblem(k store.AgentKey, agentID string) string {
	lk, ok := a.keys[k.KID]
	var retired *uint64
	switch {
	case ok && !identity.SameJWK(lk.jwk, []byte(k.PublicJWK)):
		return fmt.Sprintf("key %s of agent %s is stored with another public key than entry %d logged", k.KID, agentID, lk.introduced)
	case ok:
		retired = lk.retired
	default:
		retired = a.unloggedRetired(k.KID)
	}
	switch {
	case k.Status == store.KeyActive && retired != nil:
		return fmt.Sprintf("key %s of agent %s is active, but entry %d retired it", k.KID, agentID, *retired)
	case k.Status != store.KeyActive && ok && retired == nil:
		return fmt.Sprintf("key %s of agent %s is retired, but no entry retired it", k.KID, agentID)
	}
	return ""
}

// rowProblem says why cp, a counterparty row with its sealed bank details,
// is not what its entry recorded, or "": verified only if recorded so,
// blocked still if recorded so (no entry unblocks one), its name, its
// bank details. ledger verify and ledger adopt hold rows so.
func (l loggedCounterparty) rowProblem(cp store.Counterparty) string {
	sum := sha256.Sum256(cp.BankDetailsSealed)
	switch {
	case cp.Status == store.CounterpartyVerified && l.status != string(store.CounterpartyVerified):
		return fmt.Sprintf("counterparty %s is verified, but entry %d recorded it %s", cp.ID, l.index, l.status)
	case l.status == string(store.CounterpartyBlocked) && cp.Status != store.CounterpartyBlocked:
		return fmt.Sprintf("counterparty %s is %s, but entry %d recorded it blocked", cp.ID, cp.Status, l.index)
	case cp.Name != l.name:
		return fmt.Sprintf("counterparty %s is stored with another name than entry %d recorded", cp.ID, l.index)
	case (l.bankSHA == "") != (len(cp.BankDetailsSealed) == 0) || l.bankSHA != "" && !recordsDigest(l.bankSHA, sum[:]):
		return fmt.Sprintf("counterparty %s is stored with other bank details than entry %d recorded", cp.ID, l.index)
	}
	return ""
}

type loggedAgentKey struct {
	introduced uint64
	jwk        json.RawMessage
	retired    *uint64 // the rotation that retired it
}

type loggedActivation struct {
	rollback bool
	rec      policyRecord
}

type loggedCase struct {
	opened  uint64
	rec     caseRecord
	expired *uint64
}

type loggedCounterparty struct {
	index  uint64
	name   string
	status string
	// bankSHA is the SHA-256 of the sealed bank details the entry
	// recorded (base64, or hex before 2026-11-28), "" for none.
	bankSHA string
}

// loggedPolicy is a policy entry's index and record (R: policyRecord of
// an upload, verificationKeyRecord).
type loggedPolicy[R any] struct {
	index uint64
	rec   R
}

// NewRowLog returns an empty RowLog.
func NewRowLog() *RowLog {
	return &RowLog{agents: map[string]*loggedAgent{}, counterparties: map[string]loggedCounterparty{},
		bundles: map[string][]loggedPolicy[policyRecord]{}, vkeys: map[string][]loggedPolicy[verificationKeyRecord]{},
		cases: map[string]*loggedCase{}, activations: map[uint64]loggedActivation{}}
}

// Entry reads entry e and its record (ledger.CheckOptions.CheckRecord);
// an error is what is wrong with it.
func (r *RowLog) Entry(e verify.Entry, record []byte) error {
	switch e.Kind {
	case KindDecision:
		r.decisions++
	case KindReceipt:
		r.receipts++
	case KindCaseOpened, KindCaseExpired:
		return r.caseEntry(e, record)
	case "policy.activate", "policy.rollback":
		var rec policyRecord
		if json.Unmarshal(record, &rec) != nil || rec.Revision != e.Subject {
			return fmt.Errorf("a policy activation entry that does not name its revision")
		}
		r.activations[e.Index] = loggedActivation{rollback: e.Kind == "policy.rollback", rec: rec}
	case identity.KindAgentRegistered, identity.KindAgentKeyRotated, identity.KindAgentSuspended:
		return r.agentEntry(e, record)
	case identity.KindAgentAdopted:
		return r.adoptionEntry(e, record)
	case KindCounterpartyCreated, KindCounterpartyAdopted:
		var rec CounterpartyRecord
		if json.Unmarshal(record, &rec) != nil || rec.CounterpartyID != e.Subject || rec.Event != strings.ReplaceAll(e.Kind, ".", "_") {
			return fmt.Errorf("a counterparty entry that does not name its counterparty, or its event")
		}
		if first, dup := r.counterparties[rec.CounterpartyID]; dup {
			return fmt.Errorf("counterparty %s recorded again (first by entry %d)", rec.CounterpartyID, first.index)
		}
		r.counterparties[rec.CounterpartyID] = loggedCounterparty{index: e.Index, name: rec.Name, status: rec.Status, bankSHA: rec.BankDetailsSealedSHA256}
		r.cpOrder = append(r.cpOrder, rec.CounterpartyID)
	case kindPolicyUpload:
		var rec policyRecord
		if json.Unmarshal(record, &rec) != nil || rec.Event != "upload" || rec.Revision != e.Subject || rec.BundleSHA == "" {
			return fmt.Errorf("a policy upload entry that does not name its revision and SHA-256")
		}
		if _, seen := r.bundles[rec.Revision]; !seen {
			r.bundleOrder = append(r.bundleOrder, rec.Revision)
		}
		r.bundles[rec.Revision] = append(r.bundles[rec.Revision], loggedPolicy[policyRecord]{index: e.Index, rec: rec})
	case kindPolicyVerificationKey:
		var rec verificationKeyRecord
		if json.Unmarshal(record, &rec) != nil || rec.Event != "verification_key" || rec.KID != e.Subject || rec.PublicPEM == "" {
			return fmt.Errorf("a verification key entry that does not name its key")
		}
		if _, seen := r.vkeys[rec.KID]; !seen {
			r.vkeyOrder = append(r.vkeyOrder, rec.KID)
		}
		r.vkeys[rec.KID] = append(r.vkeys[rec.KID], loggedPolicy[verificationKeyRecord]{index: e.Index, rec: rec})
	}
	return nil
}

func (r *RowLog) caseEntry(e verify.Entry, record []byte) error {
	var rec caseRecord
	if json.Unmarshal(record, &rec) != nil || rec.CaseID != e.Subject {
		return fmt.Errorf("a case entry that does not name its case")
	}
	c, known := r.cases[rec.CaseID]
	switch {
	case e.Kind == KindCaseOpened && known:
		return fmt.Errorf("case %s opened again (first by entry %d)", rec.CaseID, c.opened)
	case e.Kind == KindCaseOpened:
		r.cases[rec.CaseID] = &loggedCase{opened: e.Index, rec: rec}
	case !known:
		return fmt.Errorf("case %s expired, but no entry opened it", rec.CaseID)
	case c.expired != nil:
		return fmt.Errorf("case %s expired again (first by entry %d)", rec.CaseID, *c.expired)
	default:
		index := e.Index
		c.expired = &index
	}
	return nil
}

func (r *RowLog) agentEntry(e verify.Entry, record []byte) error {
	var rec identity.AgentRecord
	if json.Unmarshal(record, &rec) != nil || rec.AgentID != e.Subject {
		return fmt.Errorf("an agent entry that does not name its agent")
	}
	ag, known := r.agents[rec.AgentID]
	index := e.Index
	if e.Kind == identity.KindAgentRegistered {
		if known {
			return fmt.Errorf("agent %s registered again, or after entries changed it", rec.AgentID)
		}
		ag = &loggedAgent{registered: &index, firstEntry: index, name: rec.Name, sponsor: rec.Sponsor, tier: rec.RiskTier, keys: map[string]*loggedAgentKey{}}
		r.agents[rec.AgentID] = ag
		r.agentOrder = append(r.agentOrder, rec.AgentID)
		return ag.introduce(rec.KeyID, rec.PublicJWK, index)
	}
	if !known {
		// Registered before agents were logged: what the log says of it
		// from here on is checked all the same, and its adoption.
		ag = &loggedAgent{keys: map[string]*loggedAgentKey{}, firstEntry: index}
		r.agents[rec.AgentID] = ag
		r.agentOrder = append(r.agentOrder, rec.AgentID)
	}
	if e.Kind == identity.KindAgentSuspended {
		ag.suspended = &index
		return nil
	}
	// A rotation retires every other active key of the agent. Its record
	// names them since d87bb85; an older one does not, and retired them
	// all the same.
	var listed struct {
		Retired *[]string `json:"retired_key_ids"`
	}
	if json.Unmarshal(record, &listed) != nil || listed.Retired == nil {
		if ag.registered == nil && ag.rotatedUnlisted == nil {
			ag.rotatedUnlisted = &index // and every key from before agents were logged
		}
		for _, kid := range ag.keyOrder {
			if k := ag.keys[kid]; k.retired == nil {
				k.retired = &index
			}
		}
	} else {
		for _, kid := range *listed.Retired {
			k, ok := ag.keys[kid]
			switch {
			case !ok && ag.registered == nil:
				// A key from before agents were logged, which the
				// agent's adoption records: as retired, or its row is
				// held to this entry (Rows).
				if ag.retiredUnlogged == nil {
					ag.retiredUnlogged = map[string]uint64{}
				}
				ag.retiredUnlogged[kid] = index
			case !ok || k.retired != nil:
				return fmt.Errorf("the entry retires key %s of agent %s, which is not one of its active keys", kid, rec.AgentID)
			default:
				k.retired = &index
			}
		}
	}
	return ag.introduce(rec.KeyID, rec.PublicJWK, index)
}

// adoptionEntry reads an agent.adopted entry: an agent stored before
// agents were logged, as an operator found it (Adopter), with its keys
// that no entry introduced. It stands for the agent's registration from
// here on; what entries said of the agent before it (rotations, a
// suspension) still holds.
func (r *RowLog) adoptionEntry(e verify.Entry, record []byte) error {
	var rec identity.AgentRecord
	if json.Unmarshal(record, &rec) != nil || rec.AgentID != e.Subject || rec.Event != "agent_adopted" {
		return fmt.Errorf("an agent adoption entry that does not name its agent")
	}
	index := e.Index
	ag, known := r.agents[rec.AgentID]
	switch {
	case !known:
		ag = &loggedAgent{keys: map[string]*loggedAgentKey{}, firstEntry: index}
		r.agents[rec.AgentID] = ag
		r.agentOrder = append(r.agentOrder, rec.AgentID)
	case ag.adopted:
		return fmt.Errorf("agent %s adopted again (first by entry %d)", rec.AgentID, *ag.registered)
	case ag.registered != nil:
		return fmt.Errorf("agent %s adopted, but entry %d registered it", rec.AgentID, *ag.registered)
	}
	ag.registered, ag.adopted = &index, true
	ag.name, ag.sponsor, ag.tier = rec.Name, rec.Sponsor, rec.RiskTier
	for _, k := range rec.Keys {
		if l, dup := ag.keys[k.KeyID]; dup {
			return fmt.Errorf("the entry adopts key %s of agent %s, which entry %d introduced", k.KeyID, rec.AgentID, l.introduced)
		}
		if err := ag.introduce(k.KeyID, k.PublicJWK, index); err != nil {
			return err
		}
		l := ag.keys[k.KeyID]
		if l.retired = ag.unloggedRetired(k.KeyID); l.retired == nil && k.Status != store.KeyActive {
			l.retired = &index
		}
	}
	switch rec.Status {
	case store.AgentSuspended:
		if ag.suspended == nil {
			ag.suspended = &index
		}
	case store.AgentRevoked:
		ag.revoked = &index
	}
	return nil
}

func (a *loggedAgent) introduce(kid string, jwk json.RawMessage, index uint64) error {
	if first, dup := a.keys[kid]; dup {
		return fmt.Errorf("key %s introduced again (first by entry %d)", kid, first.introduced)
	}
	if kid == "" || len(jwk) == 0 {
		return fmt.Errorf("an agent entry that names no key")
	}
	a.keys[kid] = &loggedAgentKey{introduced: index, jwk: jwk}
	a.keyOrder = append(a.keyOrder, kid)
	return nil
}

// Rows checks the organization's rows against the entries read
// (ledger.CheckOptions.CheckRows): the first thing that does not match is
// an error wrapping ledger.ErrRowsMismatch.
func (r *RowLog) Rows(ctx context.Context, tx store.TenantTx) error {
	if err := r.agentRows(ctx, tx); err != nil {
		return err
	}
	if err := r.counterpartyRows(ctx, tx); err != nil {
		return err
	}
	if err := r.policyRows(ctx, tx); err != nil {
		return err
	}
	if err := r.decisionRows(ctx, tx); err != nil {
		return err
	}
	if err := r.paymentRows(ctx, tx); err != nil {
		return err
	}
	if err := r.receiptRows(ctx, tx); err != nil {
		return err
	}
	return r.caseRows(ctx, tx)
}

func (r *RowLog) policyRows(ctx context.Context, tx store.TenantTx) error {
	list, err := tx.Policies().Bundles(ctx)
	if err != nil {
		return err
	}
	stored := map[string]bool{}
	for _, b := range list {
		stored[b.Revision] = true
		logged, ok := r.bundles[b.Revision]
		if !ok {
			return mismatch("policy bundle %q is stored, but no entry uploaded it", b.Revision)
		}
		// Bundles lists without the bytes: they are read one at a time.
		full, err := tx.Policies().Bundle(ctx, b.Revision)
		if err != nil {
			return err
		}
		if !bytesIntact(full) {
			return mismatch("policy bundle %q is stored with bytes whose SHA-256 is not its digest", b.Revision)
		}
		uploads := func(rec policyRecord) bool { return rec.uploads(b) }
		if err := matchLogged(logged, b.LedgerIndex, uploads, fmt.Sprintf("policy bundle %q", b.Revision),
			"upload", "SHA-256, signed flag or uploader"); err != nil {
			return err
		}
	}
	for _, rev := range r.bundleOrder {
		if !stored[rev] {
			return mismatch("policy bundle %q was uploaded by entry %d, but the store does not hold it", rev, r.bundles[rev][0].index)
		}
	}
	if err := r.activationRows(ctx, tx); err != nil {
		return err
	}
	keys, err := tx.Policies().VerificationKeys(ctx)
	if err != nil {
		return err
	}
	clear(stored)
	for _, k := range keys {
		stored[k.KID] = true
		logged, ok := r.vkeys[k.KID]
		if !ok {
			return mismatch("bundle verification key %q is stored, but no entry registered it", k.KID)
		}
		registers := func(rec verificationKeyRecord) bool { return rec.registers(k) }
		if err := matchLogged(logged, k.LedgerIndex, registers, fmt.Sprintf("bundle verification key %q", k.KID),
			"register", "key or algorithm"); err != nil {
			return err
		}
	}
	for _, kid := range r.vkeyOrder {
		if !stored[kid] {
			return mismatch("bundle verification key %q was registered by entry %d, but the store does not hold it", kid, r.vkeys[kid][0].index)
		}
	}
	return nil
}

// activationRows holds every activation row that names an entry to it,
// as the service does the active one when it loads it (checkActivation):
// a policy.activate, or policy.rollback for a rollback, recording the
// row's seq, revision, people and the stored bundle's SHA-256. A row
// naming none is one from before rows named their entry, and only before
// any that does. (Found by review: a planted activation passed ledger
// verify while the service refused to load the organization's policy.)
func (r *RowLog) activationRows(ctx context.Context, tx store.TenantTx) error {
	acts, err := tx.Policies().Activations(ctx)
	if err != nil {
		return err
	}
	named := false
	for _, a := range acts {
		if a.LedgerIndex == nil {
			if named {
				return mismatch("activation %d names no entry, after an activation that does", a.Seq)
			}
			continue
		}
		named = true
		l, ok := r.activations[*a.LedgerIndex]
		if !ok || l.rec.Seq != a.Seq || l.rollback != a.Rollback || l.rec.Revision != a.Revision ||
			l.rec.By != a.ActivatedBy || l.rec.ApprovedBy != a.ApprovedBy {
			return mismatch("activation %d names entry %d, which does not record it", a.Seq, *a.LedgerIndex)
		}
		b, err := tx.Policies().Bundle(ctx, a.Revision)
		if err != nil {
			return err
		}
		if !recordsDigest(l.rec.BundleSHA, b.Digest) {
			return mismatch("activation %d names entry %d, which records another bundle", a.Seq, *a.LedgerIndex)
		}
	}
	return nil
}

// matchLogged holds a stored policy row to its subject's entries (logged,
// in log order, at least one): to the entry it names (named), or, for a
// row from before rows named their entry, to any of them; matches says
// whether a record is the row. row names the row in the mismatch, verb is
// what its entry did ("upload"), differs what a record may hold otherwise.
func matchLogged[R any](logged []loggedPolicy[R], named *uint64, matches func(R) bool, row, verb, differs string) error {
	if named != nil {
		i := slices.IndexFunc(logged, func(l loggedPolicy[R]) bool { return l.index == *named })
		switch {
		case i < 0:
			return mismatch("%s names entry %d, which did not %s it", row, *named, verb)
		case !matches(logged[i].rec):
			return mismatch("%s is stored with another %s than entry %d %sed", row, differs, logged[i].index, verb)
		}
		return nil
	}
	if !slices.ContainsFunc(logged, func(l loggedPolicy[R]) bool { return matches(l.rec) }) {
		return mismatch("%s is stored with another %s than entry %d %sed", row, differs, logged[len(logged)-1].index, verb)
	}
	return nil
}

// asJSONString is s as a JSON string holds it once decoded: each byte of
// invalid UTF-8 a U+FFFD (encoding/json's writers replace them).
func asJSONString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

func (r *RowLog) agentRows(ctx context.Context, tx store.TenantTx) error {
	agents, err := tx.Agents().List(ctx)
	if err != nil {
		return err
	}
	stored := map[string]bool{}
	for _, ag := range agents {
		stored[ag.ID] = true
		l, ok := r.agents[ag.ID]
		if !ok {
			l = &loggedAgent{keys: map[string]*loggedAgentKey{}}
		}
		switch {
		case ag.LedgerIndex == nil:
			return mismatch("agent %s names no entry: planted, or stored before agents were logged and not adopted since", ag.ID)
		case l.registered == nil:
			return mismatch("agent %s names entry %d, but no entry registered it", ag.ID, *ag.LedgerIndex)
		case *ag.LedgerIndex != *l.registered:
			return mismatch("agent %s names entry %d, but entry %d registered it", ag.ID, *ag.LedgerIndex, *l.registered)
		}
		if why := l.rowProblem(ag); why != "" {
			return mismatch("%s", why)
		}
		keys, err := tx.Agents().Keys(ctx, ag.ID)
		if err != nil {
			return err
		}
		if err := l.keyRows(ag.ID, keys); err != nil {
			return err
		}
	}
	for _, id := range r.agentOrder {
		switch l := r.agents[id]; {
		case stored[id]:
		case l.registered == nil:
			return mismatch("agent %s is named by entry %d, but the store no longer holds it", id, l.firstEntry)
		default:
			return mismatch("agent %s was registered by entry %d, but the store no longer holds it", id, *l.registered)
		}
	}
	return nil
}

func (a *loggedAgent) keyRows(agentID string, keys []store.AgentKey) error {
	var stored []string
	for _, k := range keys {
		stored = append(stored, k.KID)
		l, ok := a.keys[k.KID]
		switch {
		case k.LedgerIndex == nil:
			return mismatch("key %s of agent %s names no entry: planted, or stored before keys were logged and not adopted since", k.KID, agentID)
		case !ok:
			return mismatch("key %s of agent %s is stored, but no entry introduced it", k.KID, agentID)
		case *k.LedgerIndex != l.introduced:
			return mismatch("key %s of agent %s names entry %d, but entry %d introduced it", k.KID, agentID, *k.LedgerIndex, l.introduced)
		}
		if why := a.keyProblem(k, agentID); why != "" {
			return mismatch("%s", why)
		}
	}
	for _, kid := range a.keyOrder {
		if !slices.Contains(stored, kid) {
			return mismatch("key %s of agent %s was introduced by entry %d, but the store no longer holds it", kid, agentID, a.keys[kid].introduced)
		}
	}
	return nil
}

func (r *RowLog) counterpartyRows(ctx context.Context, tx store.TenantTx) error {
	cps, err := tx.Counterparties().List(ctx)
	if err != nil {
		return err
	}
	stored := map[string]bool{}
	for _, cp := range cps {
		stored[cp.ID] = true
		l, ok := r.counterparties[cp.ID]
		switch {
		case cp.LedgerIndex == nil:
			return mismatch("counterparty %s names no entry: planted, or stored before counterparties were logged and not adopted since", cp.ID)
		case !ok:
			return mismatch("counterparty %s names entry %d, but no entry recorded it", cp.ID, *cp.LedgerIndex)
		case *cp.LedgerIndex != l.index:
			return mismatch("counterparty %s does not name entry %d, which recorded it", cp.ID, l.index)
		}
		// List reads no bank details: the row is read again for them.
		// Nothing changes them once recorded (found by review: a
		// payment's beneficiary swapped behind the log passed).
		full, err := tx.Counterparties().Get(ctx, cp.ID)
		if err != nil {
			return err
		}
		if why := l.rowProblem(full); why != "" {
			return mismatch("%s", why)
		}
	}
	for _, id := range r.cpOrder {
		if !stored[id] {
			return mismatch("counterparty %s was recorded by entry %d, but the store no longer holds it", id, r.counterparties[id].index)
		}
	}
	return nil
}

func mismatch(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ledger.ErrRowsMismatch}, args...)...)
}
