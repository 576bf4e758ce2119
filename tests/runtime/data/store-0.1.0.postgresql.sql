-- A store written by lettabot 0.1.0 (pg_dump --no-owner --no-privileges --inserts; psql meta-commands removed)
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: lettabot_approvals; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_approvals (
    request_id character varying NOT NULL,
    scope character varying NOT NULL,
    conversation_id character varying NOT NULL,
    tool_name character varying NOT NULL,
    input_digest character varying(64) NOT NULL,
    input_summary text NOT NULL,
    requested_by character varying NOT NULL,
    created_at timestamp with time zone NOT NULL,
    status character varying(16) NOT NULL,
    decided_by character varying,
    decided_at timestamp with time zone,
    reason text,
    message_ref text
);


--
-- Name: lettabot_processed_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_processed_events (
    adapter character varying NOT NULL,
    event_id character varying NOT NULL,
    claimed_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: lettabot_routes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_routes (
    scope character varying NOT NULL,
    agent_id character varying NOT NULL,
    conversation_id character varying NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: lettabot_schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_schema_version (
    id integer NOT NULL,
    version integer NOT NULL
);


--
-- Name: lettabot_schema_version_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.lettabot_schema_version_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: lettabot_schema_version_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.lettabot_schema_version_id_seq OWNED BY public.lettabot_schema_version.id;


--
-- Name: lettabot_settings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_settings (
    key character varying NOT NULL,
    value text NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: lettabot_tool_rules; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lettabot_tool_rules (
    id character varying NOT NULL,
    scope character varying NOT NULL,
    tool_name character varying NOT NULL,
    kind character varying(16) NOT NULL,
    pattern text NOT NULL,
    created_by character varying NOT NULL,
    created_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: lettabot_schema_version id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_schema_version ALTER COLUMN id SET DEFAULT nextval('public.lettabot_schema_version_id_seq'::regclass);


--
-- Data for Name: lettabot_approvals; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_approvals VALUES ('req-1', 'slack:T1:C1:1700000000.1', 'local-conv-7', 'Bash', '4cf29611a66934862f29acfcc817e30b905c1ab73d5e65831413eb6b454d49db', 'ls', 'U1', '2026-12-03 06:44:34.141226+00', 'approved', 'slack:U1', '2026-12-03 06:44:34.145299+00', NULL, NULL);


--
-- Data for Name: lettabot_processed_events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_processed_events VALUES ('slack', 'Ev123', '2026-12-03 06:44:34.13888+00', '2036-11-30 06:44:34.13888+00');


--
-- Data for Name: lettabot_routes; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_routes VALUES ('slack:T1:C1:1700000000.1', 'agent-local-1111', 'local-conv-7', '2026-12-03 06:44:34.133506+00', '2026-12-03 06:44:34.133506+00');
INSERT INTO public.lettabot_routes VALUES ('discord:G1:C9', 'agent-local-1111', 'local-conv-8', '2026-12-03 06:44:34.136791+00', '2026-12-03 06:44:34.136791+00');


--
-- Data for Name: lettabot_schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_schema_version VALUES (1, 2);


--
-- Data for Name: lettabot_settings; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_settings VALUES ('bot_agent_id', 'agent-local-1111', '2026-12-03 06:44:34.151261+00');


--
-- Data for Name: lettabot_tool_rules; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.lettabot_tool_rules VALUES ('r-6b04998e49', 'slack:T1:C1:1700000000.1', 'Bash', 'prefix', 'git status', 'slack:U1', '2026-12-03 06:44:34.147312+00', '2036-11-30 06:44:34.147312+00');


--
-- Name: lettabot_schema_version_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.lettabot_schema_version_id_seq', 1, false);


--
-- Name: lettabot_approvals lettabot_approvals_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_approvals
    ADD CONSTRAINT lettabot_approvals_pkey PRIMARY KEY (request_id);


--
-- Name: lettabot_processed_events lettabot_processed_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_processed_events
    ADD CONSTRAINT lettabot_processed_events_pkey PRIMARY KEY (adapter, event_id);


--
-- Name: lettabot_routes lettabot_routes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_routes
    ADD CONSTRAINT lettabot_routes_pkey PRIMARY KEY (scope);


--
-- Name: lettabot_schema_version lettabot_schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_schema_version
    ADD CONSTRAINT lettabot_schema_version_pkey PRIMARY KEY (id);


--
-- Name: lettabot_settings lettabot_settings_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_settings
    ADD CONSTRAINT lettabot_settings_pkey PRIMARY KEY (key);


--
-- Name: lettabot_tool_rules lettabot_tool_rules_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lettabot_tool_rules
    ADD CONSTRAINT lettabot_tool_rules_pkey PRIMARY KEY (id);


--
-- Name: ix_lettabot_approvals_status_scope; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_lettabot_approvals_status_scope ON public.lettabot_approvals USING btree (status, scope);


--
-- Name: ix_lettabot_processed_events_expires_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_lettabot_processed_events_expires_at ON public.lettabot_processed_events USING btree (expires_at);


--
-- Name: ix_lettabot_tool_rules_expires_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_lettabot_tool_rules_expires_at ON public.lettabot_tool_rules USING btree (expires_at);


--
-- Name: ix_lettabot_tool_rules_scope_tool; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_lettabot_tool_rules_scope_tool ON public.lettabot_tool_rules USING btree (scope, tool_name);


--
-- PostgreSQL database dump complete
--


