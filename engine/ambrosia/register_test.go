package ambrosia

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/ambr-dev/ambr/internal/azurite"
)

var testRegistration = Registration{Instance: "server", ReceivePort: 2500, SendPort: 2501, LogPath: "/home/me/.ambr/server/",
	CurrentVersion: 0, UpgradeToVersion: 0, SegmentMB: 64}

// readElementText reads an element as AMBROSIA's Node.js binding does
// (Storage.ts: text between <name> and </name>, "" for <name />).
func readElementText(xml, name string) (string, bool) {
	if strings.Contains(xml, "<"+name+" />") {
		return "", true
	}
	start := strings.Index(xml, "<"+name+">")
	end := strings.Index(xml, "</"+name+">")
	if start < 0 || end < start {
		return "", false
	}
	return xml[start+len(name)+2 : end], true
}

// TestRegistrationXML: the blob holds what the Node.js binding reads, found
// the way it finds it.
func TestRegistrationXML(t *testing.T) {
	b, err := testRegistration.XML()
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start, end := strings.Index(doc, "<AmbrosiaRuntimeParams"), strings.Index(doc, "</AmbrosiaRuntimeParams>")
	if start < 0 || end < start {
		t.Fatalf("no AmbrosiaRuntimeParams element:\n%s", doc)
	}
	params := doc[start : end+len("</AmbrosiaRuntimeParams>")]
	for name, want := range map[string]string{
		"serviceReceiveFromPort": "2500", "serviceSendToPort": "2501", "serviceLogPath": "/home/me/.ambr/server/",
		"currentVersion": "0", "upgradeToVersion": "0", "activeActive": "false", "serviceName": "server",
		"AmbrosiaBinariesLocation": "AmbrosiaBinaries", "logTriggerSizeMB": "64",
	} {
		got, ok := readElementText(params, name)
		if !ok || got != want {
			t.Errorf("%s = %q (found %v), want %q\n%s", name, got, ok, want, params)
		}
	}
	if strings.Contains(doc, "storageConnectionString") {
		t.Errorf("the blob carries the connection string:\n%s", doc)
	}
	if got := BlobName("server", 0); got != "AmbrosiaBinaries/server-server0" {
		t.Errorf("BlobName = %q", got)
	}
}

func TestRegisterRefusesWhatItCannotWrite(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		r    Registration
		conn string
		want string
	}{
		{testRegistration, "", "set AZURE_STORAGE_CONN_STRING"},
		{Registration{Instance: "x"}, "UseDevelopmentStorage=true", "needs both ports"},
		{testRegistration, "not a connection string", "AZURE_STORAGE_CONN_STRING:"},
	} {
		err := Register(ctx, c.conn, c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Register(%+v, %q) = %v, want an error with %q", c.r, c.conn, err, c.want)
		}
	}
}

// TestRegisterAzurite writes a registration to azurite (Microsoft's Azure
// Storage emulator, from the npm registry), reads it back as a binding
// would, and registers again with new ports (a restart).
func TestRegisterAzurite(t *testing.T) {
	conn := azurite.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Register(ctx, conn, testRegistration); err != nil {
		t.Fatal(err)
	}
	p, err := ReadRegistration(ctx, conn, "server", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.ServiceReceiveFromPort != 2500 || p.ServiceSendToPort != 2501 || p.ServiceName != "server" || p.ServiceLogPath != "/home/me/.ambr/server/" {
		t.Errorf("read back %+v", p)
	}
	tables, err := aztables.NewServiceClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The table exists and is empty: the binding counts rows in it.
	pager := tables.NewClient(ConnectionTable).NewListEntitiesPager(nil)
	rows := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s: %v", ConnectionTable, err)
		}
		rows += len(page.Entities)
	}
	if rows != 0 {
		t.Errorf("%s has %d rows, want 0", ConnectionTable, rows)
	}
	// Registering again (new ports after a restart) replaces the blob.
	again := testRegistration
	again.ReceivePort, again.SendPort = 3500, 3501
	if err := Register(ctx, conn, again); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	if p, err := ReadRegistration(ctx, conn, "server", 0); err != nil || p.ServiceReceiveFromPort != 3500 || p.ServiceSendToPort != 3501 {
		t.Errorf("after re-registering: %+v, %v", p, err)
	}
	if _, err := ReadRegistration(ctx, conn, "nosuch", 0); err == nil || !strings.Contains(err.Error(), "AmbrosiaBinaries/nosuch-nosuch0") {
		t.Errorf("reading a registration that is not there: %v", err)
	}
}
