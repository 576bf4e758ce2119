-- A store written by lettabot 0.1.0 (sqlite3 iterdump)
BEGIN TRANSACTION;
CREATE TABLE lettabot_approvals (
	request_id VARCHAR NOT NULL, 
	scope VARCHAR NOT NULL, 
	conversation_id VARCHAR NOT NULL, 
	tool_name VARCHAR NOT NULL, 
	input_digest VARCHAR(64) NOT NULL, 
	input_summary TEXT NOT NULL, 
	requested_by VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	decided_by VARCHAR, 
	decided_at DATETIME, 
	reason TEXT, 
	message_ref TEXT, 
	PRIMARY KEY (request_id)
);
INSERT INTO "lettabot_approvals" VALUES('req-1','slack:T1:C1:1700000000.1','local-conv-7','Bash','4cf29611a66934862f29acfcc817e30b905c1ab73d5e65831413eb6b454d49db','ls','U1','2026-12-03 06:44:32.596125','approved','slack:U1','2026-12-03 06:44:32.599003',NULL,NULL);
CREATE TABLE lettabot_processed_events (
	adapter VARCHAR NOT NULL, 
	event_id VARCHAR NOT NULL, 
	claimed_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (adapter, event_id)
);
INSERT INTO "lettabot_processed_events" VALUES('slack','Ev123','2026-12-03 06:44:32.594609','2036-11-30 06:44:32.594609');
CREATE TABLE lettabot_routes (
	scope VARCHAR NOT NULL, 
	agent_id VARCHAR NOT NULL, 
	conversation_id VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (scope)
);
INSERT INTO "lettabot_routes" VALUES('slack:T1:C1:1700000000.1','agent-local-1111','local-conv-7','2026-12-03 06:44:32.590951','2026-12-03 06:44:32.590951');
INSERT INTO "lettabot_routes" VALUES('discord:G1:C9','agent-local-1111','local-conv-8','2026-12-03 06:44:32.593060','2026-12-03 06:44:32.593060');
CREATE TABLE lettabot_schema_version (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "lettabot_schema_version" VALUES(1,2);
CREATE TABLE lettabot_settings (
	"key" VARCHAR NOT NULL, 
	value TEXT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "lettabot_settings" VALUES('bot_agent_id','agent-local-1111','2026-12-03 06:44:32.602873');
CREATE TABLE lettabot_tool_rules (
	id VARCHAR NOT NULL, 
	scope VARCHAR NOT NULL, 
	tool_name VARCHAR NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	pattern TEXT NOT NULL, 
	created_by VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "lettabot_tool_rules" VALUES('r-6b04998e49','slack:T1:C1:1700000000.1','Bash','prefix','git status','slack:U1','2026-12-03 06:44:32.600315','2036-11-30 06:44:32.600315');
CREATE INDEX ix_lettabot_processed_events_expires_at ON lettabot_processed_events (expires_at);
CREATE INDEX ix_lettabot_approvals_status_scope ON lettabot_approvals (status, scope);
CREATE INDEX ix_lettabot_tool_rules_expires_at ON lettabot_tool_rules (expires_at);
CREATE INDEX ix_lettabot_tool_rules_scope_tool ON lettabot_tool_rules (scope, tool_name);
COMMIT;
