// Package ambrosia writes the registration AMBROSIA's own language
// bindings look for before they connect to their Immortal Coordinator, so
// that an app built on one of them (the Node.js binding, say) runs on an
// ambr coordinator unchanged.
//
// In AMBROSIA, `Ambrosia RegisterInstance` stores an instance's settings
// through CRA in Azure Storage; a binding running in its "Separated" IC mode
// reads them back from there before it starts, and exits if they are
// missing. ambr needs none of it — its coordinator keeps everything in the
// instance directory — but the bindings do. What they read, and so what
// Register writes, in the storage account named by the connection string
// in AZURE_STORAGE_CONN_STRING:
//
//	container  cra
//	  blob     AmbrosiaBinaries/<instance>-<instance><replica>
//	           <AmbrosiaRuntimeParams>: serviceReceiveFromPort (the
//	           coordinator's receive port), serviceSendToPort (its send
//	           port), serviceName, serviceLogPath, currentVersion,
//	           upgradeToVersion, activeActive, … (the XML AMBROSIA's
//	           XmlSerializer writes; see RuntimeParams)
//	table      craconnectiontable
//	           must exist: the binding counts the instance's connections in
//	           it. Register creates it empty when it is missing and never
//	           writes rows (ambr's coordinators find each other through
//	           ambr's registry, not CRA's).
//
// These facts come from AMBROSIA's sources (AmbrosiaLib's
// AmbrosiaRuntimeParams, Ambrosia's RegisterInstance mode, and the Node.js
// binding's Storage.ts, which reads the blob).
package ambrosia
