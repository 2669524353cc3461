package immortal

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
	"github.com/google/go-cmp/cmp"
)

func TestFirstStartConversation(t *testing.T) {
	obs := &observer{}
	app := newTestApp(obs, WithInitArgs(map[string]string{"greeting": "hi"}))
	if _, ok := app.State(); ok {
		t.Error("State reports a state before the first start")
	}
	c := connect(t, app)
	before := time.Now()
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	init := c.expect(logfmt.TypeInitialMessage)
	ck := c.expect(logfmt.TypeCheckpoint)
	after := time.Now()

	env, err := ParseEnvelope(init.Data)
	if err != nil {
		t.Fatalf("InitialMessage data is not an envelope: %v", err)
	}
	if env.Time < before.UnixNano() || env.Time > after.UnixNano() {
		t.Errorf("InitialMessage time %v is not the wall time of the first start (%v to %v)", time.Unix(0, env.Time), before, after)
	}
	want := Envelope{Time: env.Time, Payload: []byte(`{"greeting":"hi"}`)}.Append(nil)
	if !bytes.Equal(init.Data, want) {
		t.Errorf("InitialMessage data\n%x, want\n%x", init.Data, want)
	}
	if !bytes.HasPrefix(init.Data, []byte{EnvelopeVersion, 0, 0, 0}) { // version, flags, empty method, call id 0
		t.Errorf("InitialMessage data starts %x", init.Data[:4])
	}
	wantCk := `{"state":{"started":false,"n":0},"binding":{"codec":"json","next_call_id":1,"pending":{},"state_type":"github.com/ambr-dev/ambr/engine/immortal.testState"}}`
	if string(ck.State) != wantCk {
		t.Errorf("first checkpoint\n%s, want\n%s", ck.State, wantCk)
	}

	// Nothing else comes before the echo: a checkpoint asked for now is the
	// next message, and OnFirstStart has not run.
	c.control(logfmt.TypeTakeCheckpoint)
	c.expect(logfmt.TypeCheckpoint)
	if got := obs.observations(); len(got) != 0 {
		t.Fatalf("handlers ran before the InitialMessage came back: %+v", got)
	}
	if s := mustState(t, app); s.Started {
		t.Error("state says started before OnFirstStart ran")
	}

	// The echo runs OnFirstStart, at the logical time of the InitialMessage.
	c.send(1, logfmt.AppendInitialMessage(nil, init.Data), nil)
	c.control(logfmt.TypeTakeCheckpoint)
	if msgs, _ := c.until(); len(msgs) != 0 {
		t.Errorf("app sent %d messages for the echo, want none", len(msgs))
	}
	wantObs := []observation{{method: "OnFirstStart", seq: 1, now: time.Unix(0, env.Time).UTC()}}
	if diff := cmp.Diff(wantObs, obs.observations(), cmp.AllowUnexported(observation{})); diff != "" {
		t.Errorf("observations (-want +got):\n%s", diff)
	}
	if s := mustState(t, app); !s.Started || s.Greeting != "hi" {
		t.Errorf("state after OnFirstStart: %+v", s)
	}

	// Primary now: an impulse goes to self as an RPCImpulse.
	mustImpulse(t, app, "count", 0)
	m := c.expect(logfmt.TypeRPC)
	o, err := logfmt.ParseOutgoingRPC(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !o.IsSelf() || o.Kind != logfmt.RPCImpulse || o.Reserved != ReservedRequest || o.MethodID != MethodID("count") {
		t.Errorf("impulse sent as %+v", o)
	}
	if env, err := ParseEnvelope(o.Args); err != nil || env.Method != "count" || string(env.Payload) != "0" {
		t.Errorf("impulse envelope %+v, %v", env, err)
	}
}

func TestSelfForkChain(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "count", 3)
	ic.settle()
	if s := mustState(t, app); s.N != 4 {
		t.Errorf("count ran %d times, want 4", s.N)
	}
	// Record 1 is the InitialMessage, 2 the impulse, 3 to 5 the forks.
	if len(ic.log) != 5 {
		t.Fatalf("log holds %d records, want 5", len(ic.log))
	}
	for seq, want := range map[int]logfmt.RPCKind{2: logfmt.RPCImpulse, 3: logfmt.RPCFork, 4: logfmt.RPCFork, 5: logfmt.RPCFork} {
		r := onlyRPC(t, ic.log[seq-1])
		if r.Kind != want || r.MethodID != MethodID("count") {
			t.Errorf("record %d holds a %v of method id %d, want a %v of count", seq, r.Kind, r.MethodID, want)
		}
	}
	want := `{"state":{"started":true,"n":4},"binding":{"codec":"json","next_call_id":1,"pending":{},"state_type":"github.com/ambr-dev/ambr/engine/immortal.testState"}}`
	if got := string(ic.lastCheckpoint()); got != want {
		t.Errorf("checkpoint\n%s, want\n%s", got, want)
	}
}

// onlyRPC decodes a record body that holds one RPC.
func onlyRPC(t *testing.T, body []byte) logfmt.RPC {
	t.Helper()
	m, n, err := logfmt.ParseMessage(body)
	if err != nil || n != len(body) || m.Type != logfmt.TypeRPC {
		t.Fatalf("record body is not one RPC: %v, %d of %d bytes, %v", m.Type, n, len(body), err)
	}
	r, err := logfmt.ParseRPC(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSelfCallWithResult(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "start", 21)
	ic.settle()
	if diff := cmp.Diff([]string{`42 err=<nil> note="double 21"`}, mustState(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	call := onlyRPC(t, ic.log[2])
	env, err := ParseEnvelope(call.Args)
	if err != nil {
		t.Fatal(err)
	}
	if call.Kind != logfmt.RPCCall || call.Reserved != ReservedRequest || env.Method != "double" || env.CallID != 1 || env.ReplyTo != DefaultName {
		t.Errorf("call sent as %+v with envelope %+v", call, env)
	}
	result := onlyRPC(t, ic.log[3])
	renv, err := ParseEnvelope(result.Args)
	if err != nil {
		t.Fatal(err)
	}
	if result.Reserved != ReservedResult || result.Kind != logfmt.RPCFork || result.MethodID != MethodID("") {
		t.Errorf("result sent as %+v", result)
	}
	if diff := cmp.Diff(Envelope{CallID: 1, Time: env.Time, Payload: []byte("42")}, renv); diff != "" {
		t.Errorf("result envelope (-want +got):\n%s", diff)
	}
	want := `{"state":{"started":true,"n":0,"results":["42 err=\u003cnil\u003e note=\"double 21\""]},"binding":{"codec":"json","next_call_id":2,"pending":{},"state_type":"github.com/ambr-dev/ambr/engine/immortal.testState"}}`
	if got := string(ic.lastCheckpoint()); got != want {
		t.Errorf("checkpoint\n%s, want\n%s", got, want)
	}
}

func TestCallOfFailingHandler(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "startFail", nil)
	ic.settle()
	want := []string{`0 err=immortal: call to fail failed: boom note=""`}
	if diff := cmp.Diff(want, mustState(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if env, err := ParseEnvelope(onlyRPC(t, ic.log[3]).Args); err != nil || env.Flags != FlagError || string(env.Payload) != "boom" {
		t.Errorf("error result envelope %+v, %v", env, err)
	}
}

func TestPendingCallSurvivesRecovery(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "start", 21)
	ic.step() // logs and delivers the impulse: record 2 makes the call
	ic.step() // checkpoints with the call pending; delivers the call as record 3
	k := len(ic.checkpoints) - 1
	var ck struct {
		Binding struct {
			NextCallID int64                      `json:"next_call_id"`
			Pending    map[string]json.RawMessage `json:"pending"`
		} `json:"binding"`
	}
	if err := json.Unmarshal(ic.checkpoints[k].state, &ck); err != nil {
		t.Fatal(err)
	}
	wantPending := map[string]string{"1": `{"on_result":"doubled","method":"double","note":{"tag":"double 21"}}`}
	gotPending := map[string]string{}
	for id, p := range ck.Binding.Pending {
		gotPending[id] = string(p)
	}
	if diff := cmp.Diff(wantPending, gotPending); diff != "" || ck.Binding.NextCallID != 2 {
		t.Fatalf("checkpoint with the call pending: next_call_id %d, pending (-want +got):\n%s", ck.Binding.NextCallID, diff)
	}

	// Record 3 ran and sent the result, but the coordinator crashes before
	// logging it.
	ic.crash()
	obs := &observer{}
	app2 := newTestApp(obs)
	ic.recoverFrom(app2, k) // replays record 3, whose result is new: record 4
	ic.settle()

	if diff := cmp.Diff([]string{`42 err=<nil> note="double 21"`}, mustState(t, app2).Results); diff != "" {
		t.Errorf("results after recovery (-want +got):\n%s", diff)
	}
	var got []string
	for _, o := range obs.observations() {
		got = append(got, o.method+" "+itoa(o.seq)+" replaying="+btoa(o.replaying))
	}
	want := []string{"double 3 replaying=true", "doubled 4 replaying=false"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handlers run in recovery (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(ic.lastCheckpoint()), `"pending":{}`) {
		t.Errorf("a call is still pending: %s", ic.lastCheckpoint())
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func btoa(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestReplayIsDeterministic(t *testing.T) {
	ic := newFakeIC(t)
	obs1 := &observer{}
	app1 := newTestApp(obs1)
	ic.start(app1)
	mustImpulse(t, app1, "sample", nil)
	ic.settle()
	before := mustState(t, app1)
	if len(before.Samples) != 1 || len(before.Echoes) != 1 {
		t.Fatalf("state after sampling: %+v", before)
	}
	smp, echo := before.Samples[0], before.Echoes[0]
	if echo.Now != smp.Now || echo.Rand != smp.Rand || smp.Seq != 2 || echo.Seq != 3 {
		t.Errorf("the echo (%+v) does not carry the sender's time and number (%+v)", echo, smp)
	}
	ic.crash()

	// Recover from the first checkpoint: everything is replayed, and
	// recoverFrom checks the regenerated output byte for byte.
	obs2 := &observer{}
	app2 := newTestApp(obs2)
	ic.recoverFrom(app2, 0)
	ic.settle()
	if diff := cmp.Diff(before, mustState(t, app2)); diff != "" {
		t.Errorf("state after replay differs (-first run +replay):\n%s", diff)
	}
	first, replay := obs1.observations(), obs2.observations()
	if len(replay) != len(first) {
		t.Fatalf("replay ran %d handlers, the first run %d", len(replay), len(first))
	}
	for i := range first {
		f, r := first[i], replay[i]
		if f.replaying || !r.replaying {
			t.Errorf("handler %s at %d: Replaying() %v on the first run and %v in replay", f.method, f.seq, f.replaying, r.replaying)
		}
		if f.method != r.method || f.seq != r.seq || !f.now.Equal(r.now) {
			t.Errorf("replay saw %+v, the first run %+v", r, f)
		}
	}

	// Live again: a new sample is not replaying and draws another number.
	mustImpulse(t, app2, "sample", nil)
	ic.settle()
	after := mustState(t, app2)
	if last := obs2.observations()[len(obs2.observations())-1]; last.replaying {
		t.Errorf("handler %s after recovery ran with Replaying() true", last.method)
	}
	if len(after.Samples) != 2 || after.Samples[1].Rand == after.Samples[0].Rand {
		t.Errorf("samples %+v: a new message should draw another number", after.Samples)
	}
}

func TestImpulseOnlyWhilePrimary(t *testing.T) {
	obs := &observer{}
	app := newTestApp(obs)
	if err := app.Impulse("count", 0); !errors.Is(err, ErrNotPrimary) {
		t.Errorf("Impulse before Serve: %v, want ErrNotPrimary", err)
	}
	ic := newFakeIC(t)
	ic.start(app)
	if err := app.Impulse("nope", 0); err == nil || errors.Is(err, ErrNotPrimary) {
		t.Errorf("Impulse of an unknown method: %v", err)
	}
	mustImpulse(t, app, "tryImpulse", nil) // which itself sends an impulse
	ic.settle()
	if errs := obs.errs(); len(errs) != 1 || errs[0] != nil {
		t.Fatalf("impulse from a live handler: %v", errs)
	}
	if s := mustState(t, app); s.N != 1 {
		t.Errorf("count ran %d times, want 1", s.N)
	}
	records := len(ic.log)
	ic.crash()
	if err := app.Impulse("count", 0); !errors.Is(err, ErrNotPrimary) {
		t.Errorf("Impulse after Serve returned: %v, want ErrNotPrimary", err)
	}

	obs2 := &observer{}
	app2 := newTestApp(obs2)
	ic.recoverFrom(app2, 0)
	ic.settle()
	errs := obs2.errs()
	if len(errs) != 1 || !errors.Is(errs[0], ErrNotPrimary) || !strings.Contains(errs[0].Error(), "replaying") {
		t.Errorf("impulse from a handler while replaying: %v, want ErrNotPrimary (replaying)", errs)
	}
	if s := mustState(t, app2); s.N != 1 {
		t.Errorf("after replay count ran %d times, want 1 (the logged impulse only)", s.N)
	}
	if len(ic.log) != records {
		t.Errorf("recovery added %d records", len(ic.log)-records)
	}
	mustImpulse(t, app2, "count", 0)
}

func TestImpulseRefusedUntilBecomingPrimary(t *testing.T) {
	ck, err := encodeCheckpoint(JSONCodec{}, []byte(`{"n":5}`), &bindingState{nextCallID: 1})
	if err != nil {
		t.Fatal(err)
	}
	app := newTestApp(&observer{})
	c := connect(t, app)
	c.send(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(ck))), ck)
	c.control(logfmt.TypeTakeCheckpoint) // a barrier: the checkpoint record is processed
	c.expect(logfmt.TypeCheckpoint)
	if err := app.Impulse("count", 0); !errors.Is(err, ErrNotPrimary) {
		t.Errorf("Impulse while recovering: %v, want ErrNotPrimary", err)
	}
	if s := mustState(t, app); s.N != 5 {
		t.Errorf("state from the checkpoint: %+v", s)
	}
	c.control(logfmt.TypeBecomingPrimary) // no checkpoint wanted
	c.control(logfmt.TypeTakeCheckpoint)
	if msgs, _ := c.until(); len(msgs) != 0 {
		t.Errorf("app answered BecomingPrimary with %d messages", len(msgs))
	}
	mustImpulse(t, app, "count", 0)
	c.expect(logfmt.TypeRPC)
}

func TestRequestCheckpoint(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "ckpt", nil)
	ic.settle()
	if ic.ckRequests != 1 {
		t.Errorf("app asked for %d checkpoints, want 1", ic.ckRequests)
	}
	ic.crash()
	ic.recoverFrom(newTestApp(&observer{}), 0) // fails if the replay asks again
}

func TestRemoteMessages(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "remote", nil)
	ic.settle()
	mustImpulse(t, app, "remote", nil)
	ic.settle()
	if diff := cmp.Diff(map[string]int{"other": 1, "third": 1}, ic.attached); diff != "" {
		t.Errorf("AttachTo messages per destination (-want +got):\n%s", diff)
	}
	var got []string
	for _, o := range ic.remote {
		env, err := ParseEnvelope(o.rpc.Args)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.dest+" "+o.rpc.Kind.String()+" "+env.Method+" "+string(env.Payload)+" id="+itoa(env.CallID)+" reply-to="+env.ReplyTo)
	}
	want := []string{
		"other Fork ping 1 id=0 reply-to=", "other Fork ping 2 id=0 reply-to=", "third Fork ping 3 id=0 reply-to=", "other Call double 5 id=1 reply-to=self",
		"other Fork ping 1 id=0 reply-to=", "other Fork ping 2 id=0 reply-to=", "third Fork ping 3 id=0 reply-to=", "other Call double 5 id=2 reply-to=self",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("RPCs to other instances (-want +got):\n%s", diff)
	}

	// The other instance answers the second call, then the first.
	for _, i := range []int{7, 3} {
		env, _ := ParseEnvelope(ic.remote[i].rpc.Args)
		reply := Envelope{CallID: env.CallID, Time: env.Time, Payload: []byte(itoa(10 * env.CallID))}
		ic.deliver(logfmt.RPC{Reserved: ReservedResult, MethodID: MethodID(""), Kind: logfmt.RPCFork, Args: reply.Append(nil)})
	}
	ic.settle()
	wantResults := []string{`20 err=<nil> note="remote"`, `10 err=<nil> note="remote"`}
	if diff := cmp.Diff(wantResults, mustState(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

func TestSkipsWhatItCannotDispatch(t *testing.T) {
	var logs syncBuffer
	ic := newFakeIC(t)
	app := newTestApp(&observer{}, WithLogger(slogTo(&logs)))
	ic.start(app)
	fork := func(method string, id int32, env []byte) logfmt.RPC {
		return logfmt.RPC{MethodID: id, Kind: logfmt.RPCFork, Args: env}
	}
	ic.deliver(
		fork("nope", MethodID("nope"), Envelope{Method: "nope"}.Append(nil)),
		fork("garbage", 5, []byte{9, 9, 9}),
		fork("count", MethodID("count"), Envelope{Method: "other"}.Append(nil)),
		fork("system", -3, nil),
		logfmt.RPC{Reserved: ReservedResult, MethodID: MethodID(""), Kind: logfmt.RPCFork, Args: Envelope{CallID: 99}.Append(nil)},
		logfmt.RPC{Reserved: 7, MethodID: MethodID(""), Kind: logfmt.RPCFork, Args: Envelope{}.Append(nil)},
		fork("count", MethodID("count"), Envelope{Method: "count", Payload: []byte("0")}.Append(nil)),
	)
	// A call of a method without a handler gets an error back.
	ic.deliver(logfmt.RPC{MethodID: MethodID("nope"), Kind: logfmt.RPCCall, Args: Envelope{Method: "nope", CallID: 7, ReplyTo: "other"}.Append(nil)})
	ic.settle()
	if s := mustState(t, app); s.N != 1 {
		t.Errorf("count ran %d times, want 1", s.N)
	}
	for _, want := range []string{
		"handler failed", "no handler for method nope",
		"cannot read", "does not match its name", "system method id", "not pending", "unknown reserved byte",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if len(ic.remote) != 1 {
		t.Fatalf("app sent %d RPCs to others, want the error result", len(ic.remote))
	}
	env, _ := ParseEnvelope(ic.remote[0].rpc.Args)
	if r := ic.remote[0]; r.dest != "other" || r.rpc.Reserved != ReservedResult || env.CallID != 7 || env.Flags != FlagError ||
		string(env.Payload) != "immortal: self has no handler for method nope" {
		t.Errorf("error result %+v with envelope %+v", r, env)
	}
}

func TestHandlerPanicStopsServe(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{})
	ic.start(app)
	mustImpulse(t, app, "panic", nil)
	ic.step()
	err := ic.c.serveErr()
	if err == nil || !strings.HasPrefix(err.Error(), "immortal: record 2: message 0: handler panic panicked: kaboom") {
		t.Errorf("Serve returned %v", err)
	}
}

// WithBase64Checkpoints: a gob app's checkpoint is the JSON form, state in
// base64, that builds before the binary form read.
func TestBase64Checkpoints(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{}, WithCodec(gobCodec{}), WithBase64Checkpoints())
	ic.start(app)
	mustImpulse(t, app, "count", 2)
	ic.step()
	ic.step()
	var ck map[string]any
	if err := json.Unmarshal(ic.lastCheckpoint(), &ck); err != nil {
		t.Fatalf("not JSON: %v: %q", err, ic.lastCheckpoint())
	}
	if _, ok := ck["state"]; ok || ck["state_b64"] == nil {
		t.Errorf("checkpoint of a gob app: %s", ic.lastCheckpoint())
	}
}

func TestOtherCodec(t *testing.T) {
	ic := newFakeIC(t)
	app := newTestApp(&observer{}, WithCodec(gobCodec{}))
	ic.start(app)
	mustImpulse(t, app, "count", 2)
	mustImpulse(t, app, "start", 4)
	ic.step()
	ic.step() // checkpoint with the call pending
	if !bytes.HasPrefix(ic.lastCheckpoint(), []byte(binaryCheckpointMagic)) {
		t.Errorf("checkpoint of a gob app, not in the binary form: %q", ic.lastCheckpoint())
	}
	asJSON := CheckpointJSON(ic.lastCheckpoint())
	var ck map[string]any
	if err := json.Unmarshal(asJSON, &ck); err != nil {
		t.Fatal(err)
	}
	if _, ok := ck["state"]; ok || ck["state_b64"] == nil {
		t.Errorf("checkpoint of a gob app: %s", asJSON)
	}
	if !strings.Contains(string(asJSON), `"note_b64":`) || !strings.Contains(string(asJSON), `"codec":"gob"`) {
		t.Errorf("checkpoint of a gob app: %s", asJSON)
	}
	ic.settle()
	before := mustState(t, app)
	ic.crash()
	app2 := newTestApp(&observer{}, WithCodec(gobCodec{}))
	ic.recoverFrom(app2, len(ic.checkpoints)-3)
	ic.settle()
	if diff := cmp.Diff(before, mustState(t, app2)); diff != "" {
		t.Errorf("state after recovery (-want +got):\n%s", diff)
	}
	if before.N != 3 || len(before.Results) != 1 {
		t.Errorf("state %+v", before)
	}
}

func TestServeReturnsNilWhenCanceled(t *testing.T) {
	app := newTestApp(&observer{})
	c := connect(t, app)
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c.expect(logfmt.TypeInitialMessage)
	c.expect(logfmt.TypeCheckpoint)
	if err := app.Serve(t.Context(), &bytes.Buffer{}, strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Serve: %v", err)
	}
	c.cancel()
	if err := c.serveErr(); err != nil {
		t.Errorf("Serve returned %v when canceled, want nil", err)
	}
}

func TestRegistrationAfterServePanics(t *testing.T) {
	app := newTestApp(&observer{})
	if err := app.Serve(t.Context(), &bytes.Buffer{}, strings.NewReader("")); err != nil {
		t.Fatalf("Serve on an empty stream: %v", err)
	}
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "after Serve started") {
			t.Errorf("Handle after Serve: panic %v", p)
		}
	}()
	Handle(app, "late", func(*Ctx, *testState, int) (int, error) { return 0, nil })
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	app := newTestApp(&observer{})
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "registered twice") {
			t.Errorf("second Handle of count: panic %v", p)
		}
	}()
	Handle(app, "count", func(*Ctx, *testState, int) (int, error) { return 0, nil })
}
