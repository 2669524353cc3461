package ambrosia

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// EnvConnString names the environment variable that holds the Azure
// Storage connection string, as in AMBROSIA.
const EnvConnString = "AZURE_STORAGE_CONN_STRING"

// Names in the storage account, fixed by AMBROSIA (and CRA under it).
const (
	Container       = "cra"
	BinariesFolder  = "AmbrosiaBinaries"
	ConnectionTable = "craconnectiontable"
)

// BlobName is the registration blob of replica replica of instance.
func BlobName(instance string, replica int) string {
	return BinariesFolder + "/" + instance + "-" + instance + strconv.Itoa(replica)
}

// RuntimeParams is AMBROSIA's AmbrosiaRuntimeParams, field for field in its
// order, as .NET's XmlSerializer writes it. storageConnectionString is
// left out on purpose: it is a credential, the bindings never read it from
// here, and ambr's coordinator does not need it.
type RuntimeParams struct {
	XMLName                  xml.Name `xml:"AmbrosiaRuntimeParams"`
	XSI                      string   `xml:"xmlns:xsi,attr"`
	XSD                      string   `xml:"xmlns:xsd,attr"`
	ServiceReceiveFromPort   int      `xml:"serviceReceiveFromPort"`
	ServiceSendToPort        int      `xml:"serviceSendToPort"`
	ServiceName              string   `xml:"serviceName"`
	AmbrosiaBinariesLocation string   `xml:"AmbrosiaBinariesLocation"`
	ServiceLogPath           string   `xml:"serviceLogPath"`
	PauseAtStart             bool     `xml:"pauseAtStart"`
	PersistLogs              bool     `xml:"persistLogs"`
	ActiveActive             bool     `xml:"activeActive"`
	LogTriggerSizeMB         int64    `xml:"logTriggerSizeMB"`
	CurrentVersion           int64    `xml:"currentVersion"`
	UpgradeToVersion         int64    `xml:"upgradeToVersion"`
}

// Registration is what ambr knows about an instance that a binding reads.
type Registration struct {
	Instance string
	Replica  int
	// ReceivePort is the coordinator's port the app sends to; SendPort the
	// one it receives log records from.
	ReceivePort, SendPort int
	// LogPath is where the instance's log lives (the instance directory).
	LogPath string
	// CurrentVersion and UpgradeToVersion are the app versions (equal
	// unless an upgrade is under way).
	CurrentVersion, UpgradeToVersion int64
	// SegmentMB is the log size that triggers a checkpoint, in MiB.
	SegmentMB    int64
	ActiveActive bool
}

// Params is r as AMBROSIA's runtime parameters.
func (r Registration) Params() RuntimeParams {
	return RuntimeParams{
		XSI: "http://www.w3.org/2001/XMLSchema-instance", XSD: "http://www.w3.org/2001/XMLSchema",
		ServiceReceiveFromPort: r.ReceivePort, ServiceSendToPort: r.SendPort, ServiceName: r.Instance,
		AmbrosiaBinariesLocation: BinariesFolder, ServiceLogPath: r.LogPath, PersistLogs: true,
		ActiveActive: r.ActiveActive, LogTriggerSizeMB: r.SegmentMB,
		CurrentVersion: r.CurrentVersion, UpgradeToVersion: r.UpgradeToVersion,
	}
}

// XML is the registration blob's content.
func (r Registration) XML() ([]byte, error) {
	b, err := xml.MarshalIndent(r.Params(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("ambrosia: encode registration of %s: %w", r.Instance, err)
	}
	return append([]byte(xml.Header), b...), nil
}

func (r Registration) check() error {
	switch {
	case r.Instance == "":
		return errors.New("ambrosia: registration without an instance name")
	case r.ReceivePort <= 0 || r.SendPort <= 0:
		return fmt.Errorf("ambrosia: registration of %s needs both ports (receive %d, send %d)", r.Instance, r.ReceivePort, r.SendPort)
	case r.Replica < 0:
		return fmt.Errorf("ambrosia: registration of %s: replica %d", r.Instance, r.Replica)
	}
	return nil
}

// Register writes r's registration to the storage account of connString:
// the container and table are created when missing, the blob is replaced.
// Running it again (a new port after a restart) updates the blob.
func Register(ctx context.Context, connString string, r Registration) error {
	if err := r.check(); err != nil {
		return err
	}
	if connString == "" {
		return fmt.Errorf("ambrosia: no storage to register %s in: set %s to the storage account's connection string", r.Instance, EnvConnString)
	}
	body, err := r.XML()
	if err != nil {
		return err
	}
	blobs, err := azblob.NewClientFromConnectionString(connString, nil)
	if err != nil {
		return fmt.Errorf("ambrosia: %s: %w", EnvConnString, err)
	}
	if _, err := blobs.CreateContainer(ctx, Container, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("ambrosia: create container %s: %w", Container, err)
	}
	name := BlobName(r.Instance, r.Replica)
	if _, err := blobs.UploadBuffer(ctx, Container, name, body, nil); err != nil {
		return fmt.Errorf("ambrosia: write %s/%s: %w", Container, name, err)
	}
	tables, err := aztables.NewServiceClientFromConnectionString(connString, nil)
	if err != nil {
		return fmt.Errorf("ambrosia: %s: %w", EnvConnString, err)
	}
	if _, err := tables.CreateTable(ctx, ConnectionTable, nil); err != nil && !isConflict(err) {
		return fmt.Errorf("ambrosia: create table %s: %w", ConnectionTable, err)
	}
	return nil
}

// isConflict says err is "already exists" (HTTP 409) from a storage call.
func isConflict(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusConflict
}

// ReadRegistration reads back the registration blob of instance's replica,
// as a binding would.
func ReadRegistration(ctx context.Context, connString, instance string, replica int) (RuntimeParams, error) {
	var p RuntimeParams
	blobs, err := azblob.NewClientFromConnectionString(connString, nil)
	if err != nil {
		return p, fmt.Errorf("ambrosia: %s: %w", EnvConnString, err)
	}
	name := BlobName(instance, replica)
	resp, err := blobs.DownloadStream(ctx, Container, name, nil)
	if err != nil {
		return p, fmt.Errorf("ambrosia: read %s/%s: %w", Container, name, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return p, fmt.Errorf("ambrosia: read %s/%s: %w", Container, name, err)
	}
	if err := xml.Unmarshal(buf.Bytes(), &p); err != nil {
		return p, fmt.Errorf("ambrosia: %s/%s: %w", Container, name, err)
	}
	return p, nil
}
